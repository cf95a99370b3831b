"""accounts.scoping: who sees everything, one platform or nothing (deny by default), and each scoped model's
partner rule, written next to the model as its queryset's `of_partner()`."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from accounts.admin import ScopedModelAdmin
from accounts.models import AnalystProfile, ApiKey, AuditEntry, Platform
from accounts.scoping import EVERYTHING, NOTHING, Scope, ScopedQuerySet, scope_of
from exchange.models import Appeal, Indicator, LookupUsage, Seller, Submission
from graph.actions import do_request_cluster_status
from graph.models import ActorCluster, Approval
from tests.admin_world import build

pytestmark = pytest.mark.django_db

SCOPED_MODELS = {
    "accounts.platform",
    "accounts.apikey",
    "accounts.analystprofile",
    "accounts.auditentry",
    "exchange.seller",
    "exchange.indicator",
    "exchange.submission",
    "exchange.appeal",
    "graph.actorcluster",
    "graph.approval",
    "graph.opinion",
    "graph.webhookdelivery",
}


def test_every_scoped_admin_reads_a_scoped_queryset():
    scoped = [model for model, page in admin.site._registry.items() if isinstance(page, ScopedModelAdmin)]
    assert {model._meta.label_lower for model in scoped} == SCOPED_MODELS
    for model in scoped:
        assert isinstance(model._default_manager.all(), ScopedQuerySet), model


def test_an_admin_over_a_queryset_that_is_not_scoped_refuses_to_show_anything(alice, rf):
    request = rf.get("/admin/")
    request.user = alice
    with pytest.raises(ImproperlyConfigured, match="LookupUsage's queryset is not a ScopedQuerySet"):
        ScopedModelAdmin(LookupUsage, admin.site).get_queryset(request)


def test_scope_of_each_kind_of_viewer(alice, bob, acme):
    staff = User.objects.create_user("dave", is_staff=True)  # no analyst profile
    inactive = User.objects.create_user("erin", is_staff=True, is_active=False)
    AnalystProfile.objects.create(user=inactive, platform=None)
    assert scope_of(alice) == EVERYTHING
    assert scope_of(User.objects.create_superuser("root")) == EVERYTHING
    assert scope_of(bob) == Scope(everything=False, platform_id=acme.platform.pk)
    assert scope_of(bob).is_partner and not scope_of(alice).is_partner
    for nobody in (staff, inactive, AnonymousUser(), User.objects.create_user("frank")):
        assert scope_of(nobody) == NOTHING and scope_of(nobody).nothing


def test_a_model_without_a_partner_rule_shows_a_partner_nothing(alice, bob, acme, bazaar):
    queryset: ScopedQuerySet[Platform] = ScopedQuerySet(model=Platform)
    assert set(queryset.visible_to(alice)) == {acme.platform, bazaar.platform}
    assert not queryset.visible_to(bob).exists()
    assert not queryset.visible_to(AnonymousUser()).exists()
    assert list(Platform.objects.visible_to(bob)) == [acme.platform]  # Platform's own rule


def test_each_models_partner_rule(alice, bob, carol, acme, bazaar):
    world = build(acme, bazaar)
    AuditEntry.objects.record("cluster_viewed", "bob", acme.platform, "cluster", str(world.ring.pk))
    AuditEntry.objects.record(
        "cluster_viewed", "carol", bazaar.platform, "cluster", str(world.bazaar_only.pk)
    )
    ActorCluster.objects.filter(pk=world.acme_only.pk).update(dissolved_at=timezone.now())
    for kp, ref in ((acme, "acme-solo"), (bazaar, "baz-solo")):
        kp.client().post(f"/api/v1/sellers/{ref}/appeals/", {"outcome": "pending"}, format="json")
    do_request_cluster_status(world.ring, alice, "dismissed")
    acme_id = acme.platform.pk
    partner_sees = {
        ActorCluster: {world.ring.pk, world.acme_only.pk},  # dissolved clusters included: history
        Seller: set(Seller.objects.filter(platform=acme_id).values_list("pk", flat=True)),
        Indicator: set(),
        Submission: set(Submission.objects.filter(platform=acme_id).values_list("pk", flat=True)),
        AuditEntry: set(AuditEntry.objects.filter(platform=acme_id).values_list("pk", flat=True)),
        Platform: {acme_id},
        ApiKey: set(),
        AnalystProfile: set(),
        Appeal: set(Appeal.objects.filter(seller__platform=acme_id).values_list("pk", flat=True)),
        Approval: set(),  # the exchange's own review
    }
    for model, expected in partner_sees.items():
        everything = model._default_manager.all()
        assert isinstance(everything, ScopedQuerySet) and everything.exists(), model
        assert set(everything.visible_to(bob).values_list("pk", flat=True)) == expected, model
        assert set(everything.visible_to(alice)) == set(everything), model
        assert not everything.visible_to(AnonymousUser()).exists(), model
    assert all(
        partner_sees[model] for model in (Seller, Submission, AuditEntry, Appeal)
    )  # not vacuously equal
