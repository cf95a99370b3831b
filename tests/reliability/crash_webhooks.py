"""Crash test of webhook delivery: kill -9 the sender mid-delivery, restart it, and check that every event
reached the receiver at least once, signed, and that the outbox ends with every event sent.

    .venv/bin/python tests/reliability/crash_webhooks.py [--kills 6] [--batches 4] [--batch-size 40]
        [--database exchange_reliab_webhooks] [--server postgres://postgres@127.0.0.1:5432]

Two platforms register webhooks pointing at a local HTTPS receiver (tests/webhook_receiver.py, its certificate
signed by a CA made here, which the exchange trusts through EXCHANGE_WEBHOOK_CA_FILE), then report sellers
through gunicorn and the reference client that link across platforms: every new cross-platform cluster,
merge and split queues events in the outbox. Then `manage.py send_webhooks --loop` sends them while it is
killed (SIGKILL to its process group) `--kills` times: half of the kills come from inside the receiver while
it holds a delivery it has read but not answered (the event arrived; the sender never learns it), half at
random moments. After each kill the sender is restarted; a claim left by a dead sender is taken over after
EXCHANGE_WEBHOOK_CLAIM_TIMEOUT (a few seconds here).

Pass: every event of the outbox is `sent`, the receiver holds exactly the outbox's event ids (deduplicated by
id: an event may have arrived more than once, never not at all), every delivery's signature verified, and
events were resent after kills (the crash was real). The database is dropped at the end unless --keep-db.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange.client import ExchangeClient
from tests.reliability.server import (
    DEFAULT_SERVER,
    Gunicorn,
    Process,
    database_url,
    drop_database,
    fake_transport_hash,
    free_port,
    log,
    manage,
    production_env,
    reset_database,
    setup,
)
from tests.webhook_receiver import Answer, Receiver, make_tls_files

CLAIM_TIMEOUT = 6  # seconds: how long a dead sender's claim blocks its event
SLUGS = ("north", "south")


def batch(slug: str, number: int, size: int, rng: random.Random) -> list[dict[str, Any]]:
    reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    sellers = []
    for n in range(size):
        indicators = [("email", f"{slug}-{number}-{n}@hooks.example")]
        if rng.random() < 0.7:  # a phone shared across platforms: clusters form, grow and merge
            indicators.append(("phone", f"ring-{rng.randrange(size * 2)}"))
        sellers.append(
            {
                "seller_ref": f"{slug}-{number}-{n}",
                "status": "confirmed",
                "reasons": ["counterfeit"],
                "reported_at": reported,
                "indicators": [{"kind": k, "hash": fake_transport_hash(k, v)} for k, v in indicators],
            }
        )
    return sellers


def outbox(url: str) -> dict[str, tuple[str, int]]:
    """{event id: (status, attempts)} of every webhook delivery."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT event_id, status, attempts FROM graph_webhookdelivery").fetchall()
    return {event_id: (status, attempts) for event_id, status, attempts in rows}


class Sender(Process):
    def __init__(self, env: dict[str, str], logfile: Path) -> None:
        args = [sys.executable, "manage.py", "send_webhooks", "--loop", "--interval", "0.2"]
        super().__init__(args, env, logfile)
        self.lock = threading.Lock()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--batches", type=int, default=4, help="batches per platform")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--drain-timeout", type=float, default=180)
    parser.add_argument("--database", default="exchange_reliab_webhooks")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="crash_webhooks_"))
    tls = make_tls_files(logdir)
    url = database_url(args.database, args.server)
    reset_database(url)
    env = production_env(url, task_mode="sync", log_level="INFO")
    env.update(
        {
            "EXCHANGE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "EXCHANGE_WEBHOOK_CA_FILE": str(tls.ca),
            "EXCHANGE_WEBHOOK_TIMEOUT": "1",
            "EXCHANGE_WEBHOOK_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT),
        }
    )
    keys = setup(env, *SLUGS)
    sender = Sender(env, logdir / "sender.log")
    secrets: list[str] = []
    kills = {"in_delivery": 0, "random": 0}
    killed_in_delivery = threading.Event()
    budget = {"in_delivery": args.kills - args.kills // 2}

    def answer(event: dict[str, Any] | None, nth: int) -> Answer:
        # Now and then, kill the sender while this delivery is read but not answered.
        if budget["in_delivery"] > 0 and nth > 3 and rng.random() < 0.08:
            with sender.lock:
                budget["in_delivery"] -= 1
                sender.kill9()
            kills["in_delivery"] += 1
            killed_in_delivery.set()
        return Answer(200, delay=0.01)

    ok = False
    receiver = Receiver(tls, lambda: list(secrets), answer)
    with receiver:
        for slug in SLUGS:
            out = manage(env, "set_webhook", slug, receiver.url(f"/{slug}"))
            secrets.append(out.strip().splitlines()[-1])
        server = Gunicorn(env, free_port(), logdir / "gunicorn.log")
        server.start()
        try:
            for slug in SLUGS:
                client = ExchangeClient(server.url, keys[slug], max_retries=8, backoff_base=0.2)
                for number in range(args.batches):
                    client.submit_batch(
                        batch(slug, number, args.batch_size, rng), idempotency_key=f"{slug}-{number}"
                    )
        finally:
            server.stop()
        queued = outbox(url)
        log(f"{len(queued)} events queued; sending with {args.kills} kill -9 of the sender")
        try:
            sender.start()
            restarted_at = 0  # deliveries when the sender last started: random kills wait until it sends
            deadline = time.monotonic() + args.drain_timeout
            random_kills = args.kills // 2
            while time.monotonic() < deadline:
                if killed_in_delivery.wait(0.05):
                    killed_in_delivery.clear()
                    time.sleep(rng.uniform(0.1, 0.5))
                    with sender.lock:
                        sender.start()
                    restarted_at = len(receiver.deliveries)
                    log(f"kill -9 of the sender inside delivery #{restarted_at}; restarted")
                elif random_kills and len(receiver.deliveries) > restarted_at + 2 and rng.random() < 0.5:
                    with sender.lock:
                        sender.kill9()
                        random_kills -= 1
                        kills["random"] += 1
                        time.sleep(rng.uniform(0.1, 0.5))
                        sender.start()
                    restarted_at = len(receiver.deliveries)
                    log(f"kill -9 of the sender at a random moment (delivery #{restarted_at}); restarted")
                if all(status == "sent" for status, _ in outbox(url).values()):
                    break
        finally:
            sender.stop()
        state = outbox(url)
        unsent = sorted(e for e, (status, _) in state.items() if status != "sent")
        received = set(receiver.events)
        resent = sum(1 for _, attempts in state.values() if attempts > 1)
        duplicates = len(receiver.verified) - len(received)
        unverified = len(receiver.deliveries) - len(receiver.verified)
        ok = (
            bool(state)
            and not unsent
            and received == set(state)
            and unverified == 0
            and sum(kills.values()) > 0
            and (kills["in_delivery"] == 0 or duplicates > 0)
        )
        log(
            f"{len(state)} events: {len(state) - len(unsent)} sent, {len(unsent)} not; receiver holds "
            f"{len(received)} distinct ({len(receiver.verified)} deliveries, {duplicates} duplicates dropped by id, "
            f"{unverified} unverified); {resent} events needed more than one attempt"
        )
    if not args.keep_db:
        drop_database(url)
    print(
        f"crash_webhooks: {'OK' if ok else 'FAILED'}; {kills['in_delivery']} kill -9 inside a delivery and "
        f"{kills['random']} at random moments; {time.monotonic() - started:.0f} s; logs in {logdir}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
