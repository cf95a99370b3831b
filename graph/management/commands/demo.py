"""`manage.py demo`: bring the embedded (SQLite) exchange to life for a newcomer. Safe to rerun.

Five marketplaces' raw reports (synthetic, with planted counterfeit rings) go through the real reference
partner client and the real HTTP API, exactly as partners would send them; then the exchange reclusters,
prints the top cross-platform clusters next to the rings that were planted (and where the ring linked only
by a reused, differently edited product photo and a store name ended up, and the ring linked only by a
falsified letter of authorisation, each copy with another company name, dates and number), sends the first marketplace's
webhook events to a receiver on this machine that verifies and prints them, and writes one report email per
platform into a folder. On the way, one platform rejects a seller's appeal with a forged bank letter, and a
seller of the partner analyst's platform appeals with the same letter: the exchange flags it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from accounts.actions import do_create_api_key, do_remove_webhook, do_set_webhook
from accounts.models import ApiKey, Cadence, Platform
from accounts.roles import assign_role
from exchange.appeals import AppealRequest, do_record_appeal
from exchange.client import ExchangeClient
from exchange.client.webhooks import SIGNATURE_HEADER, WebhookSignatureError, verify
from exchange.contract import DOCUMENT_KIND, IMAGE_KIND
from exchange.documents import MIN_CONSORTIUM_KEY_BYTES, read_consortium_key_file
from exchange.models import Seller
from fixtures.loader import load_dataset
from fixtures.synthetic import demo as demo_dataset
from graph import opinions
from graph.actions import do_record_opinion
from graph.clustering import recluster_full
from graph.models import ActorCluster, ClusterMember, Opinion
from graph.reports import write_demo_reports
from graph.webhooks import send_due_webhooks

DEMO_PASSWORD = "exchange-demo"  # noqa: S105 - demo accounts on a local, DEBUG-only database
# The file of the demo's forged bank letter: only its SHA-256 ever reaches the exchange.
FORGED_LETTER = b"%PDF-1.4 demo: a bank confirmation letter with a forged stamp"


def refuse_outside_debug(debug: bool, confirmed: bool) -> None:
    """The demo creates logins with a published password: never on a production database by accident."""
    if not debug and not confirmed:
        raise CommandError(
            "refusing to run the demo without DEBUG: it creates analyst logins with a known password "
            f"({DEMO_PASSWORD!r}), including one that sees everything. Run it with DEBUG=1 on a local database "
            "(make demo does), or pass --i-know-this-is-not-production."
        )


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class DemoReceiver:
    """A partner's webhook receiver on this machine: checks each delivery's signature with the partner
    client's `verify`, keeps each event once (by id) and answers 200; a bad signature gets 400."""

    def __init__(self) -> None:
        self.secret = ""
        self.events: dict[str, dict[str, Any]] = {}
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    event = verify(body, self.headers.get(SIGNATURE_HEADER, ""), receiver.secret)
                except WebhookSignatureError:
                    receiver.refused += 1
                    self.send_response(400)
                else:
                    receiver.events.setdefault(event["id"], event)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/exchange-events"

    @contextlib.contextmanager
    def running(self) -> Iterator[DemoReceiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class Command(BaseCommand):
    help = (
        "Set up the demo: migrate, create five demo marketplaces with API keys and two analysts, load synthetic "
        "partner reports through the partner client and API, recluster, print the top clusters, write report "
        "emails. Safe to rerun."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", type=Path, default=Path(settings.BASE_DIR) / "var" / "demo")
        parser.add_argument("--seed", type=int, default=7, help="Seed of the synthetic data (default 7).")
        parser.add_argument("--top", type=int, default=12, help="How many clusters to print.")
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000",
            help="Where the admin will be served, for the links printed at the end (make demo passes HOST:PORT).",
        )
        parser.add_argument(
            "--i-know-this-is-not-production",
            action="store_true",
            dest="not_production",
            help="Run without DEBUG (e.g. a disposable staging database). The demo logins' password is public.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_outside_debug(
            settings.DEBUG, options["not_production"]
        )  # before anything touches the database
        started = time.perf_counter()
        if options["verbosity"] < 2:
            # The server's structured log lines (a submission accepted, a recluster...) would interleave with
            # the walk-through on the same terminal; warnings and errors still show. -v 2 shows everything.
            logging.disable(logging.INFO)
        try:
            self.run_demo(options, started)
        finally:
            logging.disable(logging.NOTSET)

    def run_demo(self, options: dict[str, Any], started: float) -> None:
        demo_dir: Path = options["dir"]
        demo_dir.mkdir(parents=True, exist_ok=True)
        self.step("Migrating the embedded database")
        call_command("migrate", verbosity=0)

        dataset = demo_dataset(seed=options["seed"], now=timezone.now())
        self.step(f"Creating {len(dataset.platforms)} marketplaces with API keys (in {demo_dir})")
        keys = {}
        for spec in dataset.platforms:
            platform, _ = Platform.objects.update_or_create(
                slug=spec.slug,
                defaults={
                    "name": spec.name,
                    "default_region": spec.default_region,
                    "report_recipients": [f"trust-and-safety@{spec.slug}.example"],
                    "report_cadence": Cadence.DAILY,
                },
            )
            keys[spec.slug] = self.ensure_key(platform, demo_dir / f"{spec.slug}.key")
            self.stdout.write(f"  {spec.name:<18} {spec.slug:<16} key file {spec.slug}.key")
        consortium_key = self.ensure_consortium_key(demo_dir / "consortium.key")
        self.stdout.write("  consortium key file consortium.key: the partners' shared key for documents")

        self.step("Creating analyst accounts")
        first = Platform.objects.get(slug=dataset.platforms[0].slug)
        self.ensure_analyst("exchange-analyst", None)
        self.ensure_analyst("partner-analyst", first)

        # A receiver on this machine, over plain http: allowed to localhost for the demo only.
        with (
            override_settings(
                EXCHANGE_WEBHOOK_ALLOW_HTTP=True, EXCHANGE_WEBHOOK_ALLOWED_NETWORKS=["127.0.0.0/8"]
            ),
            DemoReceiver().running() as receiver,
        ):
            self.step(f"Registering a webhook for {first.name}: a receiver on this machine")
            do_remove_webhook(first, "system")  # a fresh secret for this run's receiver
            receiver.secret = do_set_webhook(first, receiver.url, "system") or ""
            self.stdout.write(f"  {receiver.url}")

            self.step("Loading partner reports through the reference client and the HTTP API")
            summary = self.load(dataset, demo_dir / "data", keys, consortium_key)
            self.stdout.write(
                f"  {summary.sellers} sellers sent, {summary.sightings_created} new sightings, "
                f"{summary.rejected_rows} rows rejected by the client, {len(summary.retracted)} retraction(s)"
            )

            self.step("Reclustering")
            result = recluster_full(lambda text: self.stdout.write(f"  {text}"))
            self.stdout.write(f"  {result}")

            self.step("Top cross-platform clusters (compare with the planted rings)")
            self.print_top(dataset, options["top"])

            self.step(f"{first.name} gives its opinions (partner feedback)")
            self.give_opinions(first, keys[first.slug])
            self.others_answer(first, keys)

            self.step(f"Sending {first.name}'s webhook events (signed; the receiver verifies each one)")
            sent = send_due_webhooks()
            self.print_events(receiver, sent.sent, sent.retried + sent.failed)
            do_remove_webhook(first, "system")  # nothing listens there once the demo ends

        self.step("Writing one report email per platform")
        self.write_reports()

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo ready in {time.perf_counter() - started:.0f} s."))
        self.stdout.write(f"  exchange analyst: exchange-analyst / {DEMO_PASSWORD}  (sees everything)")
        self.stdout.write(f"  partner analyst:  partner-analyst / {DEMO_PASSWORD}  ({first.name} only)")
        self.print_second_factor_note()
        url = options["url"].rstrip("/")
        self.stdout.write(f"  admin: {url}/admin/   API docs: {url}/api/v1/docs/   keys: {demo_dir}/*.key")

    def print_second_factor_note(self) -> None:
        # The demo keeps the production login (EXCHANGE_ADMIN_2FA), so a newcomer sees the enrolment page.
        policy = settings.EXCHANGE_ADMIN_2FA
        if policy == "off":
            self.stdout.write(self.style.WARNING("  EXCHANGE_ADMIN_2FA=off: no second factor (DEBUG only)"))
            return
        who = "both logins" if policy == "all" else "exchange-analyst"
        self.stdout.write(
            f"  second factor (TOTP) after the password: {who}; the first sign-in shows the secret and a "
            "QR code for any authenticator app"
        )
        self.stdout.write(
            "  no authenticator app at hand: EXCHANGE_ADMIN_2FA=off make demo (allowed only with DEBUG)"
        )

    def step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    def load(self, dataset: Any, data_dir: Path, keys: dict[str, str], consortium_key: bytes) -> Any:
        """Serve the real WSGI app on a free local port while the partner client talks to it over HTTP."""
        server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
        server.set_app(get_wsgi_application())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            summary = load_dataset(
                dataset,
                data_dir,
                url,
                keys,
                progress=lambda text: self.stdout.write(f"  {text}"),
                consortium_key=consortium_key,
            )
            self.appeal_with_a_forged_letter(dataset, url, keys)
            return summary
        finally:
            server.shutdown()
            server.server_close()
            connections.close_all()

    def appeal_with_a_forged_letter(self, dataset: Any, url: str, keys: dict[str, str]) -> None:
        """Another platform rejects its ring member's appeal and reports the bank letter falsified; a ring
        member of the first platform (the partner analyst's) appeals with the same letter, through the client,
        and is told so: the appeal needs attention (Appeals in the admin)."""
        first = dataset.platforms[0].slug
        retracted = {retraction.key for retraction in dataset.truth.retractions}
        for ring in dataset.truth.rings:
            live = [member for member in ring.members if member.key not in retracted]
            ours = [member for member in live if member.platform == first]
            theirs = [member for member in live if member.platform != first]
            if ours and theirs:
                break
        else:
            return
        letter = hashlib.sha256(FORGED_LETTER).hexdigest()
        other = theirs[0]
        ExchangeClient(url, keys[other.platform]).appeal(
            other.seller_ref, "rejected", [(letter, True)], note="stamp forged"
        )
        answer = ExchangeClient(url, keys[first]).appeal(ours[0].seller_ref, "pending", [(letter, None)])
        platforms = answer["document_checks"][0]["other_platforms"]
        self.stdout.write(
            f"  appeals: {other.platform} rejected an appeal with a forged bank letter; {first}'s seller "
            f"{ours[0].seller_ref} appealed with the same letter: reported falsified on {platforms} other "
            f"platform(s), {'needs attention' if answer['needs_attention'] else 'not flagged'}"
        )

    def print_top(self, dataset: Any, top: int) -> None:
        ring_of = {
            key: ring
            for ring in dataset.truth.rings
            for key in ((m.platform, m.seller_ref) for m in ring.members)
        }
        members: dict[int, list[tuple[str, str]]] = {}
        for cluster_id, slug, ref in ClusterMember.objects.filter(
            cluster__dissolved_at__isnull=True
        ).values_list("cluster_id", "seller__platform__slug", "seller__seller_ref"):
            members.setdefault(cluster_id, []).append((slug, ref))
        header = (
            f"  {'cluster':>7} {'sellers':>7} {'platforms':>9} {'risk':>4}  {'linked by':<34} planted ring"
        )
        self.stdout.write(header)
        for cluster in ActorCluster.objects.live().cross_platform().ranked()[:top]:
            rings = Counter(ring_of[key].label for key in members.get(cluster.pk, []) if key in ring_of)
            label = rings.most_common(1)[0][0] if rings else "(none: not planted)"
            self.stdout.write(
                f"  {cluster.pk:>7} {cluster.size:>7} {cluster.platform_count:>9} {cluster.risk:>4}  "
                f"{', '.join(cluster.kinds):<34} {label}"
            )
        planted = sum(1 for ring in dataset.truth.rings if ring.cross_platform)
        found = ActorCluster.objects.live().cross_platform().count()
        self.stdout.write(
            f"  {found} cross-platform clusters found; {planted} cross-platform rings were planted."
        )
        self.print_near_duplicate_rings(dataset, members)

    def print_near_duplicate_rings(self, dataset: Any, members: dict[int, list[tuple[str, str]]]) -> None:
        """Where each ring linked by a product photo or by a falsified letter ended up, whether or not --top
        shows its cluster. The photo's copies were cropped, resized, overlaid and re-encoded differently, so
        only near-duplicate matching of their PDQ hashes (with the store name, a second weak kind) links them;
        the letter's copies carry another company name, dates and number each, so only their keyed MinHashes'
        estimated similarity (a document is strong: on its own) links them."""
        cluster_of = {key: cluster_id for cluster_id, keys in members.items() for key in keys}
        names = {IMAGE_KIND: "photo ring", DOCUMENT_KIND: "letter ring"}
        for ring in dataset.truth.rings:
            name = next((names[link.kind] for link in ring.links if link.kind in names), None)
            if name is None:
                continue
            found = {cluster_of.get(key) for key in ring.keys}
            sellers, platforms = len(ring.keys), len(ring.platforms)
            where = (
                f"found as cluster {found.pop()}, all {sellers} sellers on {platforms} platforms"
                if len(found) == 1 and None not in found
                else "NOT found as one cluster"
            )
            self.stdout.write(f"  {name}: {where} ({ring.label})")

    def print_events(self, receiver: DemoReceiver, sent: int, unsent: int) -> None:
        kinds = Counter(event["type"] for event in receiver.events.values())
        self.stdout.write(
            f"  webhooks: sent {sent}, not sent {unsent}; the receiver verified {len(receiver.events)} event(s), "
            f"refused {receiver.refused}"
        )
        for kind, count in sorted(kinds.items()):
            self.stdout.write(f"    {kind:<22} {count}")
        for event in list(receiver.events.values())[:3]:
            data = event["data"]
            cluster = data.get("cluster")
            ref = cluster["id"] if isinstance(cluster, dict) else cluster
            sellers = data.get("your_sellers") or data.get("your_sellers_in_cluster") or []
            self.stdout.write(f"    e.g. {event['type']} {ref}: your sellers {', '.join(sellers[:3]) or '-'}")

    def give_opinions(self, platform: Platform, full_key: str) -> None:
        """The platform acted on its riskiest cross-platform cluster, and says one of its sellers in the next one
        is not that actor: a false positive, detached for it at once and pending an exchange analyst's review."""
        if Opinion.objects.filter(platform=platform).exists():
            self.stdout.write("  given in an earlier run")
            return
        api_key = ApiKey.objects.get(lookup=ApiKey.parse(full_key), platform=platform)
        clusters = list(ActorCluster.objects.live().cross_platform().seen_by(platform).ranked()[:2])
        own = {cluster.pk: opinions.own_members(cluster, platform.pk) for cluster in clusters}
        refs = dict(
            Seller.objects.filter(pk__in=[s for ids in own.values() for s in ids]).values_list(
                "pk", "seller_ref"
            )
        )
        if clusters:
            top = clusters[0]
            do_record_opinion(
                api_key, top.ref, "actioned", acted_at=timezone.now(), note="demo: store closed"
            )
            self.stdout.write(
                f"  actioned on {top.ref} (risk now {ActorCluster.objects.get(pk=top.pk).risk})"
            )
        if len(clusters) > 1 and own[clusters[1].pk]:
            second, seller_ref = clusters[1], refs[min(own[clusters[1].pk])]
            do_record_opinion(
                api_key, second.ref, "false_positive", seller_ref=seller_ref, note="demo: a different shop"
            )
            self.stdout.write(
                f"  false positive: its seller {seller_ref} is not the actor of {second.ref}; detached for "
                f"{platform.name} and pending review (admin: Opinions, pending false-positive reviews)"
            )

    def others_answer(self, first: Platform, keys: dict[str, str]) -> None:
        """Two other platforms in the first platform's riskiest cluster answer: one says it knows the actor too
        (the first platform hears of it as `cluster.opinion_added`: the kind and counts, never who), and one of
        theirs wins an appeal, which retracts its report (`report.overturned`, and in the next report email)."""
        cluster = ActorCluster.objects.live().cross_platform().seen_by(first).ranked().first()
        if cluster is None or Opinion.objects.filter(cluster=cluster).exclude(platform=first).exists():
            return
        others = list(
            Seller.objects.filter(cluster_membership__cluster=cluster, retracted_at__isnull=True)
            .exclude(platform=first)
            .select_related("platform")
            .order_by("platform__slug", "seller_ref")
        )
        if not others:
            return

        def key_of(seller: Seller) -> ApiKey:
            full_key = keys[seller.platform.slug]
            return ApiKey.objects.get(lookup=ApiKey.parse(full_key), platform=seller.platform)

        do_record_opinion(key_of(others[0]), cluster.ref, "seen_too", note="demo: same photos")
        self.stdout.write(
            f"  {others[0].platform.name} says it knows the actor of {cluster.ref} too (seen_too)"
        )
        if len(others) > 1:
            appealed = others[-1]
            do_record_appeal(
                appealed, key_of(appealed), AppealRequest("upheld", note="demo: the ban was lifted")
            )
            self.stdout.write(
                f"  {appealed.platform.name} upheld an appeal of one of its sellers in {cluster.ref}: the "
                "report is retracted, and the platforms told of it hear so (overturned)"
            )

    def write_reports(self) -> None:
        for line in write_demo_reports():
            self.stdout.write(f"  {line}")

    @staticmethod
    def ensure_key(platform: Platform, key_file: Path) -> str:
        if key_file.exists():
            full_key = key_file.read_text().strip()
            lookup = ApiKey.parse(full_key)
            key = ApiKey.objects.usable().filter(lookup=lookup, platform=platform).first() if lookup else None
            if key is not None and key.matches(full_key):
                return full_key
        _, full_key = do_create_api_key(platform, ["submit", "lookup", "read"], name="demo", actor="system")
        key_file.write_text(full_key + "\n")
        key_file.chmod(0o600)
        return full_key

    @staticmethod
    def ensure_consortium_key(key_file: Path) -> bytes:
        """The key the demo's partners share for document fingerprints, kept across reruns (fingerprints made
        with another key never match). The exchange never holds it: only the partner client reads it."""
        try:
            return read_consortium_key_file(key_file)
        except ValueError:
            key_file.write_text(secrets.token_hex(MIN_CONSORTIUM_KEY_BYTES) + "\n")
            key_file.chmod(0o600)
            return read_consortium_key_file(key_file)

    @staticmethod
    def ensure_analyst(username: str, platform: Platform | None) -> None:
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.email = f"{username}@exchange.example"
        user.set_password(DEMO_PASSWORD)
        user.save()
        assign_role(user, platform)
