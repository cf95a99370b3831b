"""Gunicorn settings for the exchange's web process: `gunicorn -c gunicorn_config.py exchange.wsgi`.

Not named gunicorn.conf.py on purpose: gunicorn loads that name from the working directory by itself, and the
test suite's own servers (single-worker, on throwaway ports) must not pick production settings up unasked.
Every value can be changed with an environment variable; the README's "Running in production" uses them.
"""

import gc
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

# Prometheus metrics from every worker in one scrape (exchange/metrics.py): with PROMETHEUS_MULTIPROC_DIR set,
# each process counts into its own files there. The directory must be private to this instance (and the
# Procrastinate worker on the same machine, which shares it); files of processes that no longer run are
# removed when gunicorn starts (counters then restart from zero, which Prometheus' rate() expects).
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server: object) -> None:
    if not _metrics_dir:
        return
    directory = Path(_metrics_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        pid = stale.stem.rpartition("_")[2]
        if not (pid.isdigit() and _running(int(pid))):
            stale.unlink(missing_ok=True)


def child_exit(server: object, worker: object) -> None:
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


# Each worker builds its in-memory indexes of the similarity kinds (photos, documents, names: exchange/similarity.py)
# before it takes requests, so that no partner's first request waits for them (at 10 million photo hashes the
# build takes about a minute). The worker tells the arbiter it is alive after every chunk read, so a long build
# is not mistaken for a hung worker. A worker whose database does not answer (or is not migrated yet) still
# starts, says so in the log, and leaves the build to the first request that needs it, as
# EXCHANGE_WARM_SIMILARITY_INDEXES=0 does.
def post_worker_init(worker: object) -> None:
    warm = os.environ.get("EXCHANGE_WARM_SIMILARITY_INDEXES", "1").strip().lower()
    if warm not in {"0", "false", "no", "off"}:
        _warm(worker)
    # What the worker holds before its first request (Django, the app, the indexes) lives as long as the worker:
    # moved out of the cyclic collector's generations, so that a full collection during a request does not
    # traverse it all again.
    gc.freeze()


def _warm(worker: object) -> None:
    import logging

    from django.db import connections

    from exchange.similarity import warm_all_indexes

    try:
        warm_all_indexes(lambda _held: worker.notify())  # type: ignore[attr-defined]
    except Exception as exc:  # the worker must start; the first request builds the index
        logging.getLogger("exchange.similarity").warning(
            "event=similarity_index_warm_failed error=%s", type(exc).__name__
        )
    finally:
        connections.close_all()  # requests open their own, as without the warm-up
