"""Gunicorn settings for the exchange's web process: `gunicorn -c gunicorn_config.py exchange.wsgi`.

Not named gunicorn.conf.py on purpose: gunicorn loads that name from the working directory by itself, and the
test suite's own servers (single-worker, on throwaway ports) must not pick production settings up unasked.
Every value can be changed with an environment variable; the README's "Running in production" uses them.
"""

import multiprocessing
import os
import re
from pathlib import Path

# Bind to the proxy's side only (README, "Behind a TLS proxy"); 0.0.0.0 only if the network is private.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
# Gunicorn's own rule of thumb for synchronous workers: two per core, plus one.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")  # "-": stdout, next to the app's stderr lines
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))  # a worker silent this long is restarted
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))  # finish requests on SIGTERM
keepalive = 5  # partners screen many lookups over one connection

# The control socket (gunicorn 23+: `gunicornc`) defaults to ~/.gunicorn/gunicorn.ctl, one path for every
# instance of a user: a second instance took the first one's. One socket per bind address instead.
_run_dir = Path(os.environ.get("GUNICORN_CONTROL_DIR", Path(__file__).resolve().parent / "var" / "run"))
_run_dir.mkdir(parents=True, exist_ok=True)
control_socket = str(_run_dir / f"gunicorn-{re.sub(r'[^A-Za-z0-9.]+', '-', bind[0]).strip('-')}.ctl")
