"""Loaded as a pytest plugin (`-p tests.envdefaults`) before Django settings are imported.

The suite runs with production-like settings (DEBUG off), so it needs the secrets a production process
needs. These test values are set only where the environment does not already provide them.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("EXCHANGE_PEPPERS", "1:dGVzdC1wZXBwZXItdmVyc2lvbi1vbmUtMzItYnl0ZXMtbG9uZyE=")
os.environ.setdefault("SECURE_SSL_REDIRECT", "False")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.pop("DEBUG", None)
# Recompute clusters inline so tests see the result of a submission at once; the worker path has its own test.
os.environ.setdefault("EXCHANGE_TASK_MODE", "sync")
# One test database per run, so that several runs against one PostgreSQL server do not collide.
os.environ.setdefault("TEST_DATABASE_NAME", f"test_exchange_{os.getpid()}")
