"""Reliability scripts (crash, restart, load) and the data world shared by the `test_reliability_*` tests.

Nothing here is collected by pytest (no `test_` prefix); the scripts are run by hand, see docs/reliability.md.
"""
