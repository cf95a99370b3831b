from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from accounts.scoping import ScopedQuerySet
from accounts.webhooks import derive_secret

KEY_PREFIX = "bax_"  # "bad-actor exchange": recognisable by secret scanners and in logs
ANALYST_KEY_PREFIX = "baxa_"  # an exchange analyst's key (AnalystKey): never a partner's
LOOKUP_LENGTH = 10
SCOPES = ("submit", "lookup", "read")


class Cadence(models.TextChoices):
    OFF = "off", "Off"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"


def validate_email_list(value: list[str]) -> None:
    if not isinstance(value, list):
        raise ValidationError("report recipients must be a list of email addresses")
    for address in value:
        validate_email(address)


class Tlp(models.TextChoices):
    """TLP 2.0 levels for the STIX the platform receives (graph/stix.py holds their marking definitions)."""

    CLEAR = "clear", "TLP:CLEAR"
    GREEN = "green", "TLP:GREEN"
    AMBER = "amber", "TLP:AMBER"
    AMBER_STRICT = "amber+strict", "TLP:AMBER+STRICT"
    RED = "red", "TLP:RED"


class PlatformQuerySet(ScopedQuerySet["Platform"]):
    def active(self) -> PlatformQuerySet:
        return self.filter(active=True)

    def of_partner(self, platform_id: int) -> PlatformQuerySet:
        """A partner analyst sees their own platform only."""
        return self.filter(pk=platform_id)


class Platform(models.Model):
    """A participating marketplace (a partner)."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    active = models.BooleanField(default=True, help_text="Inactive platforms' keys are refused.")
    default_region = models.CharField(
        max_length=2, blank=True, help_text="ISO country code used for national phone numbers."
    )
    report_recipients = models.JSONField(
        default=list, blank=True, validators=[validate_email_list], help_text="Email addresses."
    )
    report_cadence = models.CharField(max_length=10, choices=Cadence.choices, default=Cadence.OFF)
    stix_tlp = models.CharField(
        "STIX TLP",
        max_length=12,
        choices=Tlp.choices,
        default=Tlp.AMBER_STRICT,
        help_text="The TLP marking on the STIX objects this platform receives over TAXII.",
    )
    last_report_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="End of the last report period (next one starts here).",
    )
    webhook_url = models.CharField(
        "webhook URL",
        max_length=500,
        blank=True,
        editable=False,
        help_text="Where the platform receives signed events (https://). Set with set_webhook or the admin.",
    )
    # The signing secret is derived from this nonce and SECRET_KEY (accounts/webhooks.py), never stored.
    webhook_secret_nonce = models.CharField(max_length=64, blank=True, editable=False)
    webhook_secret_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PlatformQuerySet.as_manager()

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def has_webhook(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret_nonce)

    def webhook_secret(self) -> str:
        """The secret that signs this platform's webhook deliveries (derived, see accounts/webhooks.py)."""
        if not self.webhook_secret_nonce:
            raise ValueError(f"platform {self.slug} has no webhook secret")
        return derive_secret(self.pk, self.webhook_secret_nonce)


class HashedKey(models.Model):
    """What every key of the exchange shares: ``<PREFIX><lookup>_<secret>``, shown once at creation, stored as
    ``lookup`` (to find the row) and SHA-256 of the whole key. The secret has 256 bits of entropy, so a fast
    hash is enough: there is nothing to brute-force. Revocable; records when it was last used."""

    PREFIX: ClassVar[str] = KEY_PREFIX
    LAST_USED_GRANULARITY: ClassVar[timedelta] = timedelta(minutes=1)

    name = models.CharField(max_length=100, blank=True, help_text="What this key is for.")
    lookup = models.CharField(max_length=LOOKUP_LENGTH, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    @property
    def prefix(self) -> str:
        """The non-secret part, safe to show and log."""
        return f"{self.PREFIX}{self.lookup}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @staticmethod
    def digest_of(full_key: str) -> str:
        return hashlib.sha256(full_key.encode()).hexdigest()

    @classmethod
    def parse(cls, full_key: str) -> str | None:
        """The lookup part of a well-formed key of this kind, or None."""
        if not full_key.startswith(cls.PREFIX):
            return None
        lookup, sep, secret = full_key[len(cls.PREFIX) :].partition("_")
        if not sep or len(lookup) != LOOKUP_LENGTH or len(secret) < 32 or not lookup.isalnum():
            return None
        return lookup

    @classmethod
    def new_secret(cls) -> tuple[str, str, str]:
        """A fresh key: (lookup, digest, full key)."""
        lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
        full_key = f"{cls.PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
        return lookup, cls.digest_of(full_key), full_key

    def matches(self, full_key: str) -> bool:
        return hmac.compare_digest(self.digest, self.digest_of(full_key))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def touch(self) -> None:
        """Record use, at most once a minute per key so that busy keys cost no write per request."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_GRANULARITY:
            return
        type(self)._default_manager.filter(pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


class ApiKeyQuerySet(ScopedQuerySet["ApiKey"]):
    def usable(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True, platform__active=True)

    def of_partner(self, platform_id: int) -> ApiKeyQuerySet:
        """None: keys are managed by the exchange's operators only (a partner analyst is an investigator, not
        an admin)."""
        return self.none()


class ApiKey(HashedKey):
    """A platform's API key (``bax_<lookup>_<secret>``, see HashedKey) for the partner API and the platform's
    TAXII collection, with the scopes it grants."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="api_keys")
    scope_submit = models.BooleanField("submit", default=False)
    scope_lookup = models.BooleanField("lookup", default=False)
    scope_read = models.BooleanField("read", default=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.platform})"

    @property
    def scopes(self) -> list[str]:
        return [scope for scope in SCOPES if getattr(self, f"scope_{scope}")]

    def has_scope(self, scope: str) -> bool:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        return bool(getattr(self, f"scope_{scope}"))

    @classmethod
    def generate(cls, platform: Platform, scopes: list[str], name: str = "") -> tuple[ApiKey, str]:
        """Create and save a key; returns the row and the full key, which is never retrievable again."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(unknown)}; valid: {', '.join(SCOPES)}")
        if not scopes:
            raise ValueError(f"at least one scope is required ({', '.join(SCOPES)})")
        lookup, digest, full_key = cls.new_secret()
        key = cls.objects.create(
            platform=platform,
            name=name,
            lookup=lookup,
            digest=digest,
            **{f"scope_{scope}": scope in scopes for scope in SCOPES},
        )
        return key, full_key


class AnalystKey(HashedKey):
    """An exchange analyst's key (``baxa_<lookup>_<secret>``, see HashedKey): it reads the exchange-wide
    advisories collection over TAXII (graph/taxii.py) and nothing else; the partner API refuses it.

    It speaks for its analyst: it works only while that account is an active exchange analyst (or superuser)
    who may use the admin, so removing the role or deactivating the account stops the key at once. Operators
    create and revoke these (`manage.py create_analyst_key`, `manage.py revoke_api_key`), as they do partner
    keys; there is no admin page that makes one.
    """

    PREFIX: ClassVar[str] = ANALYST_KEY_PREFIX

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="analyst_keys")

    class Meta:
        verbose_name = "exchange analyst key"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def generate(cls, user: Any, name: str = "") -> tuple[AnalystKey, str]:
        """Create and save a key for `user`; returns the row and the full key, never retrievable again."""
        lookup, digest, full_key = cls.new_secret()
        return cls.objects.create(user=user, name=name, lookup=lookup, digest=digest), full_key


class AnalystProfileQuerySet(ScopedQuerySet["AnalystProfile"]):
    def of_partner(self, platform_id: int) -> AnalystProfileQuerySet:
        """None: analyst accounts are managed by the exchange's operators only."""
        return self.none()


class AnalystProfile(models.Model):
    """Links an investigator account to a role. Partner analysts belong to exactly one platform."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="analyst")
    platform = models.ForeignKey(
        Platform,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="analysts",
        help_text="Set for a partner analyst; empty for an exchange analyst.",
    )

    objects = AnalystProfileQuerySet.as_manager()

    class Meta:
        verbose_name = "analyst"

    def __str__(self) -> str:
        return f"{self.user} ({self.platform or 'exchange'})"

    @property
    def is_exchange_analyst(self) -> bool:
        return self.platform_id is None


class LoginFailureCounterQuerySet(models.QuerySet["LoginFailureCounter"]):
    def charge(self, key: str, window: timedelta, now: datetime | None = None) -> int:
        """Count one attempt against `key` and return the count in its window, atomically in every process.

        The increment is one conditional UPDATE (``failures = failures + 1``), so concurrent workers never
        lose a count, and the count is taken before the password is checked, so parallel guesses cannot all
        pass the limit check first. The count is read back in the increment's transaction: read after it, a
        concurrent worker's increment could make two attempts both see "over the limit" (both refused and
        refunded, so fewer guesses than the limit were checked).
        """
        now = now or timezone.now()
        # One transaction: the increment's row lock (PostgreSQL) or write lock (SQLite) is held until the
        # count is read back, so the count returned is this attempt's own, never a later worker's.
        with transaction.atomic():
            self.filter(window_ends__lte=now).delete()  # expired windows (anyone's): they count nothing
            if not self.filter(key=key).update(failures=models.F("failures") + 1):
                try:
                    with transaction.atomic():
                        self.create(key=key, failures=1, window_ends=now + window)
                except IntegrityError:  # another worker started this window first
                    self.filter(key=key).update(failures=models.F("failures") + 1)
            return self.filter(key=key).values_list("failures", flat=True).first() or 1

    def refund(self, key: str) -> None:
        """Take back an attempt that turned out not to be a password guess (throttled, or not a form post)."""
        self.filter(key=key, failures__gt=0).update(failures=models.F("failures") - 1)

    def clear(self, key: str) -> None:
        self.filter(key=key).delete()


class LoginFailureCounter(models.Model):
    """Admin login attempts per key (a keyed digest of username and address, or of the address) in a fixed
    window; see accounts/login.py. In the database so that every worker and machine shares one count."""

    key = models.CharField(max_length=64, unique=True)
    failures = models.PositiveIntegerField(default=0)
    window_ends = models.DateTimeField(db_index=True)

    objects = LoginFailureCounterQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.failures} until {self.window_ends:%H:%M:%S}"


class AuditEntryQuerySet(ScopedQuerySet["AuditEntry"]):
    def record(
        self,
        action: str,
        actor: str,
        platform: Platform | int | None = None,
        object_type: str = "",
        object_id: str = "",
        **details: Any,
    ) -> AuditEntry:
        platform_id = platform.pk if isinstance(platform, Platform) else platform
        return self.create(
            action=action,
            actor=actor,
            platform_id=platform_id,
            object_type=object_type,
            object_id=str(object_id),
            details=details,
        )

    def of_partner(self, platform_id: int) -> AuditEntryQuerySet:
        """A partner analyst sees the entries about their own platform."""
        return self.filter(platform_id=platform_id)


class AuditEntry(models.Model):
    """Append-only audit trail: lookups, cluster views, status changes, overrides, key actions, purges.

    Holds no identifiers: no tokens, hashes or raw values (purge entries keep only counts). In accounts, the
    lowest app, because every app writes it.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=50, db_index=True)
    actor = models.CharField(max_length=150, help_text="username, API key prefix or 'system'")
    platform = models.ForeignKey(Platform, on_delete=models.SET_NULL, null=True, blank=True)
    object_type = models.CharField(max_length=50, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action}"
