"""The admin tests' world: one cross-platform ring, one cluster on each platform alone, and loners.

acme-2 ~phone~ acme-1 ~email~ baz-1 ~tax id~ baz-2        cross-platform ring (4 sellers; email is a bridge)
acme-3 ~bank account~ acme-4                             Acme only (reported for trademark)
baz-3 ~store name + shipping address~ baz-4              Bazaar only (two weak indicators)
acme-solo, baz-solo                                      in no cluster
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditEntry
from exchange.models import Indicator, Linking
from graph.actions import do_approve, do_request_cluster_status
from graph.models import ActorCluster, ClusterEvent, EventKind
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform, make_analyst

PASSWORD = "correct horse battery staple"


@dataclass
class AdminWorld:
    acme: KeyedPlatform
    bazaar: KeyedPlatform
    ring: ActorCluster
    acme_only: ActorCluster
    bazaar_only: ActorCluster


def cluster_of(ref: str) -> ActorCluster:
    return ActorCluster.objects.live().get(members__seller__seller_ref=ref)


def build(acme: KeyedPlatform, bazaar: KeyedPlatform) -> AdminWorld:
    responses = [
        submit(
            acme.client(),
            seller("acme-1", ("email", "ring@example.com"), ("phone", "+4930111111")),
            seller("acme-2", ("phone", "+4930111111"), status="suspected"),
            seller("acme-3", ("bank_account", "DE89370400440532013000"), reasons=("trademark",)),
            seller("acme-4", ("bank_account", "DE89370400440532013000"), reasons=("trademark",)),
            seller("acme-solo", ("email", "solo@acme.example")),
        ),
        submit(
            bazaar.client(),
            seller("baz-1", ("email", "ring@example.com"), ("tax_id", "DE123456789")),
            seller("baz-2", ("tax_id", "DE123456789"), reasons=("copyright",)),
            seller("baz-3", ("store_name", "Bazaar Knockoffs"), ("shipping_address", "1 Dock Road, Hamburg")),
            seller("baz-4", ("store_name", "Bazaar Knockoffs"), ("shipping_address", "1 Dock Road, Hamburg")),
            seller("baz-solo", ("email", "solo@bazaar.example")),
        ),
    ]
    for response in responses:
        assert response.status_code == 201, response.content
    return AdminWorld(acme, bazaar, cluster_of("acme-1"), cluster_of("acme-3"), cluster_of("baz-3"))


def cut_by_the_hub_rule(acme: KeyedPlatform) -> tuple[ActorCluster, ActorCluster]:
    """n-1 ~phone~ n-2 ~email~ n-3 ~phone~ n-4, then the email marked common: two clusters the email would glue."""
    sellers = [
        seller("n-1", ("phone", "+4930100001")),
        seller("n-2", ("phone", "+4930100001"), ("email", "desk@forwarder.example")),
        seller("n-3", ("phone", "+4930100002"), ("email", "desk@forwarder.example")),
        seller("n-4", ("phone", "+4930100002")),
    ]
    assert submit(acme.client(), *sellers).status_code == 201
    Indicator.objects.filter(kind="email", sightings__seller__seller_ref="n-2").update(linking=Linking.COMMON)
    call_command("recluster", verbosity=0)
    live = ActorCluster.objects.live()
    return live.get(members__seller__seller_ref="n-1"), live.get(members__seller__seller_ref="n-4")


def logged_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def current_code(user: object) -> str:
    """The code the user's confirmed (or, while enrolling, pending) TOTP device shows now."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user).order_by("-confirmed", "pk").first()
    assert device is not None, f"{user} has no TOTP device"
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def assert_ring_taken_up_by(world: AdminWorld, user: Any) -> None:
    """The ring went from new to investigating, assigned to `user` with the note "Look.": the cluster row,
    its status event and both audit entries (as the admin and `do_update_cluster` write them)."""
    stored = ActorCluster.objects.get(pk=world.ring.pk)
    assert (stored.status, stored.assignee_id, stored.notes) == ("investigating", user.pk, "Look.")
    event = ClusterEvent.objects.get(cluster=world.ring, kind=EventKind.STATUS)
    assert (event.actor, event.details) == (user.username, {"from": "new", "to": "investigating"})
    status = AuditEntry.objects.get(action="cluster_status_changed")
    assert (status.actor, status.object_id, status.details) == (
        user.username,
        str(world.ring.pk),
        {"from": "new", "to": "investigating"},
    )
    assert AuditEntry.objects.get(action="cluster_updated").details == {"fields": ["assignee", "notes"]}


def decided_by_two_analysts(cluster: ActorCluster, status: str) -> None:
    """Confirm or dismiss a cluster as the four-eyes review does: one exchange analyst asks, another approves
    (two made for the purpose unless they exist)."""
    first, second = (
        User.objects.filter(username=name).first() or make_analyst(name, None) for name in ("ann", "ned")
    )
    do_approve(do_request_cluster_status(cluster, first, status), second)
