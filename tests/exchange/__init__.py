"""Tests of exchange/: the partner contract and API, ingest, lookups, normalisation, settings."""
