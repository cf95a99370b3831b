"""What partners report: sellers, their indicators (keyed tokens only), sightings and submissions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, Platform
from accounts.scoping import ScopedQuerySet
from exchange.hashing import default_key_version
from exchange.normalization import LINK_KINDS, REASONS, STATUSES

KIND_CHOICES = [(kind, kind.replace("_", " ")) for kind in LINK_KINDS]
STATUS_CHOICES = [(status, status) for status in STATUSES]
# Reasons as pages show them ("geographical indication"); the codes are the API's and stay in storage.
REASON_LABELS: dict[str, str] = {reason: reason.replace("_", " ") for reason in REASONS}


def linkable_q(now: datetime, path: str = "") -> Q:
    """The one rule of a linkable seller: neither retracted nor expired (both stop linking at once).
    `path` reaches the seller from another model (`"seller__"`); `Seller.is_linkable` is its Python form and
    `LINKABLE_SQL` its raw-SQL form."""
    return Q(**{f"{path}retracted_at__isnull": True, f"{path}expires_at__gt": now})


# linkable_q in raw SQL, for the queries that are not ORM (lookups, the full recluster's COPY): format with the
# seller table's alias; one parameter, now.
LINKABLE_SQL = "{alias}.retracted_at IS NULL AND {alias}.expires_at > %s"


class SellerQuerySet(ScopedQuerySet["Seller"]):
    def of_platform(self, platform: Platform | int) -> SellerQuerySet:
        return self.filter(platform=platform)

    def of_partner(self, platform_id: int) -> SellerQuerySet:
        """A partner's own sellers only: other platforms' members appear in clusters as counts, never as rows."""
        return self.of_platform(platform_id)

    def linkable(self, now: datetime | None = None) -> SellerQuerySet:
        """Sellers that may link: neither retracted nor expired (linkable_q)."""
        return self.filter(linkable_q(now or timezone.now()))

    def with_reason(self, reason: str) -> SellerQuerySet:
        return self.filter(Seller.reason_q(reason))

    def purgeable(self, before: datetime) -> SellerQuerySet:
        """Retracted or expired before `before` (the end of the grace period)."""
        return self.filter(Q(retracted_at__lt=before) | Q(expires_at__lt=before))


class Seller(models.Model):
    """One platform's reported seller account. `seller_ref` is the platform's opaque reference."""

    # No separate index on platform: (platform, seller_ref) is unique and serves platform lookups too.
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="sellers", db_index=False)
    seller_ref = models.CharField(max_length=128)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES)
    # Stored as "|counterfeit|trademark|" so that one reason can be filtered with a portable LIKE.
    reason_codes = models.CharField(max_length=200)
    first_reported_at = models.DateTimeField()
    reported_at = models.DateTimeField(help_text="Latest report.")
    expires_at = models.DateTimeField(db_index=True)
    retracted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    retraction_reason = models.TextField(blank=True)
    retracted_by = models.CharField(max_length=150, blank=True, help_text="API key prefix or user.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = SellerQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "seller_ref"], name="seller_unique_ref")]
        indexes = [models.Index(fields=["platform", "-id"], name="seller_platform_recent")]

    def __str__(self) -> str:
        return f"{self.platform_id}:{self.seller_ref}"

    @property
    def reasons(self) -> list[str]:
        return [r for r in self.reason_codes.split("|") if r]

    @property
    def reason_labels(self) -> list[str]:
        return [REASON_LABELS.get(reason, reason) for reason in self.reasons]

    @staticmethod
    def encode_reasons(reasons: list[str]) -> str:
        return "|" + "|".join(sorted(set(reasons))) + "|"

    @staticmethod
    def reason_q(reason: str, path: str = "") -> Q:
        """Sellers reported for `reason`; `path` reaches the seller from another model (`"seller__"`)."""
        return Q(**{f"{path}reason_codes__contains": f"|{reason}|"})

    @property
    def is_retracted(self) -> bool:
        return self.retracted_at is not None

    def is_linkable(self, now: datetime | None = None) -> bool:
        return self.retracted_at is None and self.expires_at > (now or timezone.now())


class Linking(models.TextChoices):
    AUTO = "auto", "automatic (threshold)"
    COMMON = "common", "marked common: never links"
    INCLUDE = "include", "force include: links above threshold"


class IndicatorQuerySet(ScopedQuerySet["Indicator"]):
    def of_partner(self, platform_id: int) -> IndicatorQuerySet:
        """None: indicators are keyed tokens shared across platforms, for exchange analysts only."""
        return self.none()


class Indicator(models.Model):
    """An identifier kind + its keyed token: HMAC(pepper, kind:transport hash). Never the raw value or hash."""

    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    token = models.CharField(max_length=64)
    key_version = models.PositiveSmallIntegerField()
    first_seen = models.DateTimeField(default=timezone.now)
    linking = models.CharField(max_length=10, choices=Linking.choices, default=Linking.AUTO)
    linking_reason = models.TextField(blank=True)
    linking_changed_by = models.CharField(max_length=150, blank=True)
    linking_changed_at = models.DateTimeField(null=True, blank=True)
    # Sellers with a sighting of it (any status). Maintained by ingest; an upper bound after purges. Lets a
    # full recluster skip the vast majority of indicators, which only one seller has.
    holders = models.PositiveIntegerField(default=0, editable=False)

    objects = IndicatorQuerySet.as_manager()

    class Meta:
        # Token first: lookups search by token alone (the kind is already mixed into the HMAC), and this
        # one index also serves ON CONFLICT (kind, token).
        constraints = [models.UniqueConstraint(fields=["token", "kind"], name="indicator_unique_token")]
        indexes = [
            models.Index(fields=["id"], condition=Q(holders__gte=2), name="indicator_shared"),
            models.Index(fields=["id"], condition=~Q(linking="auto"), name="indicator_overridden"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.token[:10]}…"


class Sighting(models.Model):
    """Seller has indicator, first/last reported."""

    # Both foreign keys are covered by the composite indexes below; separate ones would only slow ingest.
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="sightings", db_index=False)
    indicator = models.ForeignKey(
        Indicator, on_delete=models.CASCADE, related_name="sightings", db_index=False
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["seller", "indicator"], name="sighting_unique")]
        indexes = [models.Index(fields=["indicator", "seller"], name="sighting_by_indicator")]

    def __str__(self) -> str:
        return f"{self.seller_id}~{self.indicator_id}"


class SimilarItem(models.Model):
    """An item of a similarity kind (exchange.matching), whoever sent it: a product photo's PDQ hash with its
    quality and crops. `value` is its canonical form, unique per kind; not keyed (the score must survive
    between partners' items). `group` is the indicator of its near-duplicate group (exchange.similarity):
    sellers link through the group like through any indicator, so hub counting, marking common and the
    evidence chain apply to groups. Written only by `exchange.similarity.store_items`."""

    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    value = models.TextField()
    extra = models.JSONField(default=dict)
    group = models.ForeignKey(Indicator, on_delete=models.CASCADE, related_name="similar_items")
    first_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="similaritem_unique")]

    def __str__(self) -> str:
        return f"{self.kind} item {self.pk}"


class SellerItem(models.Model):
    """Which similarity items a seller was reported with (its sighting of the group says the group; this says
    the item, for the score an evidence chain shows)."""

    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="similar_items", db_index=False)
    item = models.ForeignKey(SimilarItem, on_delete=models.CASCADE, related_name="sellers")
    first_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["seller", "item"], name="selleritem_unique")]

    def __str__(self) -> str:
        return f"{self.seller_id}~item {self.item_id}"


class SimilarMatch(models.Model):
    """A direct match: two items of a kind grouped around centres (names, addresses) that fell in different
    groups but match each other at the kind's direct threshold (exchange.matching.direct_matches). It is an
    indicator of its own (`indicator`, of the items' kind), held by both items' sellers, so it links those
    sellers as a group would, and hub counting, marking common and the evidence chain apply to it. Written only
    by `exchange.similarity.store_items` and `graph.tuning.apply`."""

    indicator = models.OneToOneField(Indicator, on_delete=models.CASCADE, related_name="similar_match")
    older = models.ForeignKey(SimilarItem, on_delete=models.CASCADE, related_name="+")
    newer = models.ForeignKey(SimilarItem, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["older", "newer"], name="similarmatch_unique")]

    def __str__(self) -> str:
        return f"direct match of items {self.older_id} and {self.newer_id}"


class MatchThreshold(models.Model):
    """An exchange analyst's threshold for a similarity kind (exchange.similarity.thresholds), overriding the
    setting (EXCHANGE_IMAGE_MATCH_THRESHOLD, EXCHANGE_DOCUMENT_MATCH_THRESHOLD, EXCHANGE_FUZZY_MATCH_THRESHOLDS).
    Written only by `graph.tuning.apply`, which regroups the kind's items at the new value in the same
    transaction, after a dry run showed what would change."""

    kind = models.CharField(max_length=32, choices=KIND_CHOICES, unique=True)
    value = models.FloatField()
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.kind}: {self.value:g}"


def new_submission_ref() -> str:
    """An opaque submission reference: a sequential id would tell partners the exchange-wide volume."""
    return "sub_" + secrets.token_hex(8)


class SubmissionQuerySet(ScopedQuerySet["Submission"]):
    def of_partner(self, platform_id: int) -> SubmissionQuerySet:
        """A partner analyst sees their own platform's submissions."""
        return self.filter(platform_id=platform_id)


class Submission(models.Model):
    """One accepted API batch. The idempotency key makes a retried request harmless.

    `body_digest` tells a retry (same body) from a reuse of the key (another body) without storing the
    body. It is keyed: HMAC(pepper of `digest_version`, SHA-256(body)). A plain SHA-256 of a small batch is
    checkable against guessed phone numbers with a copy of the database; the keyed digest is not without
    the pepper, which never enters the database.
    """

    ref = models.CharField(max_length=20, unique=True, default=new_submission_ref, editable=False)
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="submissions")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, related_name="submissions")
    idempotency_key = models.CharField(max_length=255)
    body_digest = models.CharField(max_length=64)
    digest_version = models.PositiveSmallIntegerField(help_text="Pepper version keying body_digest.")
    sellers = models.PositiveIntegerField(default=0)
    indicators = models.PositiveIntegerField(default=0)
    sightings_created = models.PositiveIntegerField(default=0)
    # The first answer, replayed as is (status 201 included: only an accepted batch leaves a row).
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "idempotency_key"], name="submission_idempotency")
        ]

    def __str__(self) -> str:
        return f"submission {self.ref} of {self.platform_id}"

    @staticmethod
    def digest_body(body: bytes, version: int) -> str:
        """HMAC(pepper `version`, SHA-256(body)): the inner hash lets a migration key old plain digests."""
        try:
            pepper = settings.EXCHANGE_PEPPERS[version]
        except KeyError:
            # Peppers are never dropped from EXCHANGE_PEPPERS (stored tokens and digests need them).
            raise ImproperlyConfigured(
                f"EXCHANGE_PEPPERS lacks version {version}, which stored data uses"
            ) from None
        return hmac.new(pepper, hashlib.sha256(body).hexdigest().encode("ascii"), hashlib.sha256).hexdigest()

    def matches_body(self, body: bytes) -> bool:
        return hmac.compare_digest(self.body_digest, self.digest_body(body, self.digest_version))


class KeyStateQuerySet(models.QuerySet["KeyState"]):
    """The one door to the current pepper version (every caller asks here, none reads EXCHANGE_PEPPERS to
    pick a version itself)."""

    def current_version(self, lock: bool = False) -> int:
        """The pepper version stored tokens use. Writers pass `lock=True` to read it FOR SHARE (PostgreSQL)
        so a rotation waits for them; readers (lookups, admin hash search) need no lock: during a rotation
        they at worst miss a match for a moment. Without a row: `default_key_version` (the highest)."""
        if lock and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_version FROM exchange_keystate ORDER BY id LIMIT 1 FOR SHARE")
                row = cursor.fetchone()
            if row:
                return int(row[0])
        state = self.order_by("id").first()
        return state.current_version if state else default_key_version(settings.EXCHANGE_PEPPERS)

    def for_rotation(self) -> KeyState:
        """The state row locked FOR UPDATE (inside a transaction), created with the default if missing."""
        state = self.select_for_update().order_by("id").first()
        if state is not None:
            return state
        return self.create(current_version=default_key_version(settings.EXCHANGE_PEPPERS))


class KeyState(models.Model):
    """Which pepper version stored tokens are keyed with (a singleton row; the peppers live in env only).

    Submissions read it FOR SHARE; `rotate_pepper` locks it FOR UPDATE while it re-keys every token, so a
    submission never stores a token under a version the rest of the table has left behind.
    """

    current_version = models.PositiveSmallIntegerField(default=1)
    rotated_at = models.DateTimeField(null=True, blank=True)

    objects = KeyStateQuerySet.as_manager()

    def __str__(self) -> str:
        return f"pepper version {self.current_version}"


class LookupUsage(models.Model):
    """Indicators looked up per key per UTC day, for the daily quota."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="lookup_usage")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "day"], name="lookup_usage_unique")]

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.day}: {self.count}"


class AnalystLookupUsage(models.Model):
    """What a platform's analysts looked up in the admin per UTC day (hash searches, cluster pages), for the
    platform's daily analyst quota: the admin is no unmetered way around the API's lookup quota."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="analyst_lookup_usage")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "day"], name="analyst_lookup_usage_unique")
        ]

    def __str__(self) -> str:
        return f"{self.platform_id} {self.day}: {self.count}"


class AppealOutcome(models.TextChoices):
    PENDING = "pending", "pending"
    UPHELD = "upheld", "upheld (ban lifted, report retracted)"
    REJECTED = "rejected", "rejected"


# Appeal documents are keyed like indicators, HMAC(pepper, DOMAIN ":" SHA-256 of the file), under a domain of
# their own: issue 13's `document` kind (keyed MinHash, matched by similarity) will be another thing entirely.
APPEAL_DOCUMENT_DOMAIN = "appeal_document"


class AppealQuerySet(ScopedQuerySet["Appeal"]):
    def of_partner(self, platform_id: int) -> AppealQuerySet:
        """A partner analyst sees the appeals of their own platform's sellers."""
        return self.filter(seller__platform_id=platform_id)

    def needing_attention(self) -> AppealQuerySet:
        return self.filter(needs_attention=True)


class Appeal(models.Model):
    """A seller's appeal against its platform's report, as the platform records it (one per seller; a later
    request updates it). `upheld` lifts the ban: the report is retracted. Written by `exchange.appeals`."""

    seller = models.OneToOneField(Seller, on_delete=models.CASCADE, related_name="appeal")
    outcome = models.CharField(max_length=10, choices=AppealOutcome.choices, default=AppealOutcome.PENDING)
    note = models.TextField(blank=True)
    # A document attached to it matches one another platform reported as falsified (exchange.appeals).
    needs_attention = models.BooleanField(default=False, db_index=True)
    attention_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True, help_text="When it was last upheld or rejected.")

    objects = AppealQuerySet.as_manager()

    class Meta:
        ordering = ("-updated_at", "-id")

    def __str__(self) -> str:
        return f"appeal of seller {self.seller_id} ({self.outcome})"


class AppealDocument(models.Model):
    """A document attached to an appeal: its keyed fingerprint (never the SHA-256 the partner sent) and whether
    the platform found it falsified."""

    appeal = models.ForeignKey(Appeal, on_delete=models.CASCADE, related_name="documents", db_index=False)
    token = models.CharField(max_length=64)
    key_version = models.PositiveSmallIntegerField()
    falsified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["appeal", "token"], name="appeal_document_unique")]
        indexes = [models.Index(fields=["token"], name="appeal_document_token")]

    def __str__(self) -> str:
        return f"document {self.token[:10]}… of appeal {self.appeal_id}"


class LookupMatch(models.Model):
    """A platform's lookup matched another platform's seller (recorded the first time): the platforms to tell
    when that seller's report is retracted (`hooks.announce_retraction`). Written in the lookup's own
    statement or transaction (exchange/lookups.py); deleted with the seller when it is purged."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+", db_index=False)
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="+")
    first_matched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "seller"], name="lookup_match_once")]

    def __str__(self) -> str:
        return f"{self.platform_id} matched {self.seller_id}"
