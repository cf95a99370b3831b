"""Tests of exchange/client/: the reference partner client and its distribution."""
