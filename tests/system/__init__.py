"""Whole-system tests: end to end, a real browser, crash, fuzz, isolation, log and mass-assignment checks."""
