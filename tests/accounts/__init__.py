"""Tests of accounts/: platforms, API keys, analysts and roles, the admin login and its limits."""
