"""Registering a platform's webhook: `manage.py set_webhook` and the platform admin. Only https:// URLs whose
host resolves to public addresses (SSRF), a secret derived from a stored nonce and SECRET_KEY (shown once,
never stored, never logged), every change audited, every refusal a clear error that stores nothing."""

from __future__ import annotations

import logging
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from accounts.models import AuditEntry, Platform
from accounts.webhooks import derive_secret
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/exchange-events?source=bax"  # a public address: no DNS needed


def set_webhook(*args: str) -> str:
    out = StringIO()
    call_command("set_webhook", *args, stdout=out)
    return out.getvalue()


def fresh(kp: KeyedPlatform) -> Platform:
    return Platform.objects.get(pk=kp.platform.pk)


def every_stored_value() -> str:
    """Every column of every row of the database as text: where a secret must never be."""
    texts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - the database's own table names
            texts += [str(value) for row in cursor.fetchall() for value in row]
    return "\n".join(texts)


def test_set_webhook_registers_the_url_and_prints_the_secret_once(acme, caplog):
    caplog.set_level(logging.DEBUG)
    out = set_webhook("acme", PUBLIC_URL)

    secret = out.strip().splitlines()[-1]
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    platform = fresh(acme)
    assert platform.webhook_url == PUBLIC_URL and platform.has_webhook
    assert platform.webhook_secret() == secret == derive_secret(platform.pk, platform.webhook_secret_nonce)
    entry = AuditEntry.objects.get(action="webhook_set")
    assert entry.platform_id == platform.pk and entry.details == {"host": "93.184.215.14", "new_secret": True}
    # Never stored, never logged: only the nonce is, and the secret needs SECRET_KEY too.
    assert secret not in every_stored_value()
    assert secret not in caplog.text and secret.removeprefix("whsec_") not in caplog.text


def test_changing_the_url_keeps_the_secret_and_prints_none(acme):
    first = set_webhook("acme", PUBLIC_URL).strip().splitlines()[-1]
    out = set_webhook("acme", "https://93.184.215.15/other")
    assert "whsec_" not in out
    assert fresh(acme).webhook_url == "https://93.184.215.15/other"
    assert fresh(acme).webhook_secret() == first


def test_rotating_draws_a_new_secret_and_the_old_one_stops_signing(acme):
    first = set_webhook("acme", PUBLIC_URL).strip().splitlines()[-1]
    second = set_webhook("acme", "--rotate-secret").strip().splitlines()[-1]
    assert second.startswith("whsec_") and second != first
    assert fresh(acme).webhook_secret() == second
    assert AuditEntry.objects.filter(action="webhook_secret_rotated", platform=acme.platform).count() == 1


def test_the_secret_depends_on_secret_key(acme, settings):
    set_webhook("acme", PUBLIC_URL)
    before = fresh(acme).webhook_secret()
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert fresh(acme).webhook_secret() != before  # a copy of the database alone cannot sign


def test_remove_forgets_the_url_and_the_secret(acme):
    set_webhook("acme", PUBLIC_URL)
    assert "Removed" in set_webhook("acme", "--remove")
    platform = fresh(acme)
    assert (platform.webhook_url, platform.webhook_secret_nonce, platform.has_webhook) == ("", "", False)
    assert "had no webhook" in set_webhook("acme", "--remove")
    assert AuditEntry.objects.filter(action="webhook_removed").count() == 1
    # Registered again, it gets a new secret.
    assert set_webhook("acme", PUBLIC_URL).strip().splitlines()[-1].startswith("whsec_")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", PUBLIC_URL], "no platform with slug 'nope'"),
        (["acme"], "give a URL, --rotate-secret or --remove"),
        (["acme", PUBLIC_URL, "--remove"], "--remove takes no URL"),
        (["acme", "--rotate-secret"], "has no webhook; register one first"),
    ],
)
def test_bad_command_lines_name_what_is_wrong(acme, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        set_webhook(*args)


REFUSED = [
    ("http://93.184.215.14/hook", "must use https://"),
    ("ftp://93.184.215.14/hook", "must use https://"),
    ("93.184.215.14/hook", "must use https://"),
    ("https://user:pw@93.184.215.14/hook", "user name or password"),
    ("https:///hook", "has no host"),
    ("https://93.184.215.14:0/hook", "port"),
    ("https://93.184.215.14:99999/hook", "malformed"),
    ("https://93.184.215.14/hook#frag", "fragment"),
    ("https://93.184.215.14/ho ok", "spaces or control characters"),
    ("https://93.184.215.14/\nX-Injected: 1", "spaces or control characters"),
    ("https://bücher.example/hook", "must be ASCII"),
    ("https://93.184.215.14/" + "x" * 500, "longer than 500"),
    ("https://no-such-host.invalid/hook", "does not resolve"),
    # Not public: private, loopback, link-local (cloud metadata), shared, unspecified, multicast, reserved.
    ("https://10.1.2.3/hook", "10.1.2.3, which is not a public address"),
    ("https://192.168.0.10/hook", "not a public address"),
    ("https://172.16.5.5/hook", "not a public address"),
    ("https://127.0.0.1/hook", "not a public address"),
    ("https://localhost/hook", "not a public address"),
    ("https://169.254.169.254/latest/meta-data/", "not a public address"),
    ("https://100.64.0.1/hook", "not a public address"),
    ("https://0.0.0.0/hook", "not a public address"),
    ("https://224.0.0.1/hook", "not a public address"),
    ("https://240.0.0.1/hook", "not a public address"),
    ("https://[::1]/hook", "not a public address"),
    ("https://[fe80::1]/hook", "not a public address"),
    ("https://[fd00::1]/hook", "not a public address"),
    ("https://[::ffff:10.0.0.1]/hook", "not a public address"),
    ("https://2130706433/hook", "not a public address"),  # 127.0.0.1 as one decimal number
]


@pytest.mark.parametrize(("url", "message"), REFUSED)
def test_set_webhook_refuses_unsafe_urls_and_stores_nothing(acme, url, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        set_webhook("acme", url)
    platform = fresh(acme)
    assert (platform.webhook_url, platform.webhook_secret_nonce) == ("", "")
    assert not AuditEntry.objects.filter(action__startswith="webhook").exists()


def test_private_networks_are_allowed_only_when_listed(acme, settings):
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    set_webhook("acme", "https://10.1.2.3/hook")
    assert fresh(acme).webhook_url == "https://10.1.2.3/hook"
    with pytest.raises(CommandError, match="not a public address"):
        set_webhook("acme", "https://192.168.0.10/hook")


def test_plain_http_is_allowed_only_to_localhost_and_only_when_switched_on(acme, settings):
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with pytest.raises(CommandError, match="must use https://"):
        set_webhook("acme", "http://127.0.0.1:8080/hook")
    settings.EXCHANGE_WEBHOOK_ALLOW_HTTP = True
    set_webhook("acme", "http://127.0.0.1:8080/hook")
    set_webhook("acme", "http://localhost:8080/hook")
    with pytest.raises(CommandError, match="http:// is allowed for localhost only"):
        set_webhook("acme", "http://93.184.215.14/hook")


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,,bad"])
def test_a_malformed_allowed_networks_setting_stops_the_process_naming_it(raw):
    from exchange.config import ConfigError, parse_networks

    with pytest.raises(ConfigError, match="EXCHANGE_WEBHOOK_ALLOWED_NETWORKS"):
        parse_networks(raw, "EXCHANGE_WEBHOOK_ALLOWED_NETWORKS")
    assert parse_networks("10.0.0.0/8, 127.0.0.1", "X") == ["10.0.0.0/8", "127.0.0.1/32"]


# ------------------------------------------------------------------------------------------------ admin


def platform_form(platform: Platform, **changes: Any) -> dict[str, Any]:
    data = {
        "name": platform.name,
        "slug": platform.slug,
        "active": "on",
        "default_region": platform.default_region,
        "report_recipients": "",
        "report_cadence": platform.report_cadence,
        "stix_tlp": platform.stix_tlp,
        "webhook": platform.webhook_url,
        "api_keys-TOTAL_FORMS": "1",
        "api_keys-INITIAL_FORMS": "1",
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def admin_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_exchange_analyst_registers_a_webhook_in_the_admin_and_sees_the_secret_once(acme, alice):
    client = admin_client(alice)
    url = f"/admin/accounts/platform/{acme.platform.pk}/change/"
    form = platform_form(acme.platform, webhook=PUBLIC_URL)
    form["api_keys-0-id"] = str(acme.key.pk)
    form["api_keys-0-platform"] = str(acme.platform.pk)
    response = client.post(url, form)

    assert response.status_code == 200, response.content[:500]
    assert "no-store" in response["Cache-Control"]
    platform = fresh(acme)
    assert platform.webhook_url == PUBLIC_URL
    assert platform.webhook_secret() in response.content.decode()
    assert AuditEntry.objects.get(action="webhook_set").actor == "alice"
    # The change page does not show it again.
    page = client.get(url).content.decode()
    assert platform.webhook_secret() not in page and "It is not shown again" in page


def test_the_admin_refuses_an_unsafe_url_with_the_reason_and_stores_nothing(acme, alice):
    client = admin_client(alice)
    form = platform_form(acme.platform, webhook="https://169.254.169.254/latest/meta-data/")
    form["api_keys-0-id"] = str(acme.key.pk)
    form["api_keys-0-platform"] = str(acme.platform.pk)
    response = client.post(f"/admin/accounts/platform/{acme.platform.pk}/change/", form)
    assert response.status_code == 200
    assert "not a public address" in response.content.decode()
    assert fresh(acme).webhook_url == ""
    assert not AuditEntry.objects.filter(action__startswith="webhook").exists()


def test_the_rotate_action_shows_the_new_secret_once(acme, bazaar, alice):
    set_webhook("acme", PUBLIC_URL)
    before = fresh(acme).webhook_secret()
    client = admin_client(alice)
    response = client.post(
        "/admin/accounts/platform/",
        {"action": "rotate_webhook_secret", "_selected_action": [str(acme.platform.pk)]},
    )
    assert response.status_code == 200
    after = fresh(acme).webhook_secret()
    assert after != before and after in response.content.decode()
    # Two platforms at once, or one without a webhook: refused with a message, nothing rotated.
    for selected in ([acme.platform.pk, bazaar.platform.pk], [bazaar.platform.pk]):
        response = client.post(
            "/admin/accounts/platform/",
            {"action": "rotate_webhook_secret", "_selected_action": [str(pk) for pk in selected]},
            follow=True,
        )
        assert "whsec_" not in response.content.decode()
    assert fresh(acme).webhook_secret() == after


def test_a_partner_analyst_cannot_reach_the_platform_admin(acme, bob):
    client = admin_client(bob)
    assert client.get(f"/admin/accounts/platform/{acme.platform.pk}/change/").status_code in {403, 404}
    response = client.post(
        "/admin/accounts/platform/",
        {"action": "rotate_webhook_secret", "_selected_action": [str(acme.platform.pk)]},
    )
    assert response.status_code == 403
