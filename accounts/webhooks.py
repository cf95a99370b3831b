"""A platform's webhook endpoint: which URLs may be registered and called, and the secret that signs them.

URLs (SSRF): the exchange calls a URL that an operator typed for a partner, from inside its own network. So
a URL must be ``https://`` with a host name or address, no user name or password, no fragment; ``http://``
only to localhost and only with ``EXCHANGE_WEBHOOK_ALLOW_HTTP`` (tests, development). Every address the host
resolves to must be public: private, loopback, link-local (cloud metadata at 169.254.169.254), shared,
multicast and reserved ranges are refused unless listed in ``EXCHANGE_WEBHOOK_ALLOWED_NETWORKS``. The check
runs when the URL is registered and again at every delivery, which then connects to the very addresses it
checked (a host that resolves elsewhere the second time, DNS rebinding, gains nothing).

Secret: not stored. The platform row holds a random nonce; the secret is HMAC-SHA256 of the platform's id and
that nonce under the deployment's SECRET_KEY (Django's `salted_hmac`, with its own salt). A copy of the
database therefore cannot sign deliveries, the exchange can sign every delivery, and rotating the secret is
drawing a new nonce. It is shown once (when generated) and never logged. Changing SECRET_KEY changes every
platform's webhook secret: rotate each one and hand the new secrets over (README, "Webhooks").
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.utils.crypto import salted_hmac

MAX_URL_LENGTH = 500
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that secret scanners recognise, not a secret
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlError(ValueError):
    """A webhook URL that may not be registered or called; the message says why."""


def new_nonce() -> str:
    return secrets.token_hex(16)


def derive_secret(platform_id: int, nonce: str) -> str:
    """The platform's signing secret: ``whsec_`` and 43 URL-safe base64 characters (256 bits)."""
    digest = salted_hmac("exchange.webhooks.secret", f"{platform_id}:{nonce}", algorithm="sha256").digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n) for n in settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS]


def address_allowed(address: IPAddress) -> bool:
    """Public unicast addresses, and those in EXCHANGE_WEBHOOK_ALLOWED_NETWORKS."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(address in network for network in _allowed_networks()):
        return True
    return address.is_global and not address.is_multicast


def split(url: str) -> SplitResult:
    """The URL's parts, if its form may be registered (scheme, host, no credentials); else WebhookUrlError."""
    if not url:
        raise WebhookUrlError("the webhook URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise WebhookUrlError("the webhook URL contains spaces or control characters")
    if not url.isascii():
        raise WebhookUrlError("the webhook URL must be ASCII (write an international host name in punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookUrlError(f"the webhook URL is malformed ({error})") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme == "http":
        if not settings.EXCHANGE_WEBHOOK_ALLOW_HTTP:
            raise WebhookUrlError("the webhook URL must use https://")
        if host not in LOCAL_HOSTS:
            raise WebhookUrlError("http:// is allowed for localhost only; use https://")
    elif scheme != "https":
        raise WebhookUrlError("the webhook URL must use https://")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("the webhook URL must not contain a user name or password")
    if not host:
        raise WebhookUrlError("the webhook URL has no host")
    if parts.fragment or url.endswith("#"):
        raise WebhookUrlError("the webhook URL must not have a #fragment")
    if port == 0:
        raise WebhookUrlError("the webhook URL's port must be between 1 and 65535")
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to, all of them allowed (address_allowed); else WebhookUrlError."""
    try:
        found: set[IPAddress] = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise WebhookUrlError(f"the host {host} does not resolve") from None
        found = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    if not found:
        raise WebhookUrlError(f"the host {host} does not resolve")
    refused = sorted(str(a) for a in found if not address_allowed(a))
    if refused:
        raise WebhookUrlError(
            f"the host {host} resolves to {', '.join(refused)}, which is not a public address (private, "
            "loopback, link-local or reserved); list its network in EXCHANGE_WEBHOOK_ALLOWED_NETWORKS if "
            "this is intended"
        )
    return sorted(found, key=lambda a: (a.version, int(a)))


def check_url(url: str) -> str:
    """The URL (stripped) if it may be registered: its form (`split`) and every address of its host
    (`resolve`). Raises WebhookUrlError naming what is wrong."""
    url = url.strip()
    parts = split(url)
    resolve(parts.hostname or "", default_port(parts))
    return url
