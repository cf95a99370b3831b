"""The admin login's second factor (TOTP through django-otp), enrolment, and the idle timeout of admin sessions.

These tests log in through the real forms (never `force_login`, which the suite treats as "password and
second factor passed"): the password, then the second-factor step.
"""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEntry
from accounts.second_factor import do_replace_totp_device
from tests.admin_world import PASSWORD, current_code, logged_in
from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

LOGIN = "/admin/login/"
STEP = "/admin/second-factor/"
CLUSTERS = "/admin/graph/actorcluster/"


@pytest.fixture(autouse=True)
def _no_leftover_login_failures() -> None:
    cache.clear()


def password_step(username: str, next_url: str = "/admin/") -> tuple[Client, str]:
    client = Client()
    response = client.post(LOGIN, {"username": username, "password": PASSWORD, "next": next_url})
    assert response.status_code == 302, response.content
    return client, response["Location"]


def code_step(client: Client, code: str, next_url: str = "/admin/") -> int:
    return client.post(STEP, {"code": code, "next": next_url}).status_code


def later(seconds: int) -> time_machine.travel:
    """Past django-otp's per-device wait after a wrong code (and into a fresh TOTP step)."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


def test_exchange_analyst_with_only_the_password_is_not_admitted(alice):
    client, location = password_step("alice", CLUSTERS)
    assert urlsplit(location).path == STEP
    assert parse_qs(urlsplit(location).query)["next"] == [CLUSTERS]
    # Every admin page sends them back to the login, which sends them on to the second factor.
    response = client.get(CLUSTERS)
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    response = client.get(response["Location"])
    assert response.status_code == 302 and urlsplit(response["Location"]).path == STEP
    assert client.get("/admin/").status_code == 302


def test_exchange_analyst_without_a_device_is_led_to_enrolment_and_admitted_by_its_code(alice):
    client, location = password_step("alice", CLUSTERS)
    page = client.get(location)
    assert page.status_code == 200
    html = page.content.decode()
    device = TOTPDevice.objects.get(user=alice)
    assert not device.confirmed
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', html)
    assert secret is not None and f"secret={secret.group(1)}" in html  # the otpauth:// URI carries it too
    assert "otpauth://totp/Bad-actor%20exchange%3Aalice?" in html
    assert "<svg" in html and "<script" not in html.split('id="totp-qr"')[1].split("</div>")[0]

    assert code_step(client, "000000" if current_code(alice) != "000000" else "111111", CLUSTERS) == 200
    assert client.get(CLUSTERS).status_code == 302  # a wrong code admits nobody
    with later(10):
        response = client.post(STEP, {"code": current_code(alice), "next": CLUSTERS})
        assert response.status_code == 302 and response["Location"] == CLUSTERS
        assert client.get(CLUSTERS).status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    assert AuditEntry.objects.filter(action="admin_2fa_enrolled", actor="alice").count() == 1


def test_enrolled_analyst_must_enter_the_current_code_and_a_wrong_one_is_refused(alice):
    do_replace_totp_device(alice, "operator")
    client, location = password_step("alice")
    page = client.get(location).content.decode()
    assert "otpauth://" not in page and "totp-secret" not in page  # the secret is never shown again
    wrong = "123456" if current_code(alice) != "123456" else "654321"
    assert code_step(client, wrong) == 200
    assert code_step(client, "12 34") == 200  # not six digits: refused with a message, not a 500
    assert client.get(CLUSTERS).status_code == 302
    with later(10):
        assert code_step(client, current_code(alice)) == 302
        assert client.get(CLUSTERS).status_code == 200


def test_a_code_does_not_admit_someone_who_has_not_passed_the_password(alice):
    do_replace_totp_device(alice, "operator")
    client = Client()
    response = client.post(STEP, {"code": current_code(alice), "username": "alice"})
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert client.get(CLUSTERS).status_code == 302


def test_the_second_step_can_be_left_for_another_account(alice):
    client, _ = password_step("alice")
    response = client.post(STEP, {"cancel": "1"})
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert client.get(LOGIN).status_code == 200  # the login form again, not the second step
    assert "_auth_user_id" not in client.session


def test_partner_analyst_needs_only_the_password_by_default(bob):
    client, location = password_step("bob", CLUSTERS)
    assert location == CLUSTERS
    assert client.get(CLUSTERS).status_code == 200


def test_partner_analyst_needs_the_second_factor_when_the_policy_is_all(bob, settings):
    settings.EXCHANGE_ADMIN_2FA = "all"
    client, location = password_step("bob", CLUSTERS)
    assert urlsplit(location).path == STEP
    assert client.get(CLUSTERS).status_code == 302
    client.get(location)  # enrolment page: creates the pending device
    assert code_step(client, current_code(bob), CLUSTERS) == 302
    assert client.get(CLUSTERS).status_code == 200


def test_policy_off_lets_an_exchange_analyst_in_with_the_password(alice, settings):
    settings.EXCHANGE_ADMIN_2FA = "off"  # development only: refused without DEBUG (next test)
    client, location = password_step("alice", CLUSTERS)
    assert location == CLUSTERS and client.get(CLUSTERS).status_code == 200


def test_policy_off_and_malformed_policies_are_refused_in_production():
    result = _manage({**PRODUCTION_ENV, "EXCHANGE_ADMIN_2FA": "off"}, "check")
    assert result.returncode != 0 and "EXCHANGE_ADMIN_2FA=off is allowed only with DEBUG" in result.stderr
    result = _manage({**PRODUCTION_ENV, "EXCHANGE_ADMIN_2FA": "sometimes"}, "check")
    assert result.returncode != 0 and "EXCHANGE_ADMIN_2FA must be exchange, all or off" in result.stderr
    result = _manage({**PRODUCTION_ENV, "EXCHANGE_ADMIN_IDLE_MINUTES": "0"}, "check")
    assert result.returncode != 0 and "EXCHANGE_ADMIN_IDLE_MINUTES must be between" in result.stderr


def test_wrong_codes_count_against_the_login_rate_limit(alice):
    do_replace_totp_device(alice, "operator")
    client, _ = password_step("alice")
    wrong = "123456" if current_code(alice) != "123456" else "654321"
    statuses = [code_step(client, wrong) for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    with later(10):  # the right code is refused too while the account is locked out
        assert code_step(client, current_code(alice)) == 429
        assert client.get(CLUSTERS).status_code == 302


def test_create_analyst_can_enrol_a_totp_device_and_print_its_uri(db):
    out = StringIO()
    call_command("create_analyst", "erin", "--exchange", "--totp", stdout=out)
    uri = out.getvalue().strip().splitlines()[-1]
    assert uri.startswith("otpauth://totp/Bad-actor%20exchange%3Aerin?secret=")
    device = TOTPDevice.objects.get(user__username="erin")
    assert device.confirmed
    # --update --totp replaces the device (a lost phone): the old secret stops working.
    call_command("create_analyst", "erin", "--exchange", "--update", "--totp", stdout=StringIO())
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert TOTPDevice.objects.filter(user__username="erin", confirmed=True).count() == 1


def test_admin_session_expires_after_the_idle_time(alice):
    client = logged_in(alice)
    assert client.get(CLUSTERS).status_code == 200
    start = timezone.now()
    with time_machine.travel(start + timedelta(minutes=25), tick=False):
        assert client.get(CLUSTERS).status_code == 200  # activity renews the session
    with time_machine.travel(start + timedelta(minutes=50), tick=False):
        assert client.get(CLUSTERS).status_code == 200
    with time_machine.travel(start + timedelta(minutes=50 + 31), tick=False):
        response = client.get(CLUSTERS)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)


def test_api_answers_set_no_session_cookie(acme):
    response = acme.client().get("/api/v1/sellers/")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies
