import logging
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts.models import ApiKey, AuditEntry, Platform

pytestmark = pytest.mark.django_db


def test_generated_key_is_recognisable_and_only_its_digest_is_stored(acme):
    key, full = ApiKey.generate(acme.platform, ["read"])
    assert full.startswith("bax_") and full.startswith(key.prefix + "_")
    assert len(full) > 50
    stored = ApiKey.objects.get(pk=key.pk)
    assert full not in {stored.lookup, stored.digest}
    assert stored.digest == ApiKey.digest_of(full) != full
    assert stored.scopes == ["read"]


def test_keys_are_unique(acme):
    keys = {ApiKey.generate(acme.platform, ["read"])[1] for _ in range(20)}
    assert len(keys) == 20


def test_comparison_is_constant_time(acme):
    with mock.patch("accounts.models.hmac.compare_digest", return_value=True) as compare:
        assert acme.key.matches("anything")
    compare.assert_called_once()


def test_unknown_key_still_costs_a_digest_comparison(anonymous, acme):
    bogus = acme.secret[:-4] + "AAAA"
    other_lookup = "bax_0123456789_" + "x" * 43
    with mock.patch(
        "accounts.models.hmac.compare_digest", wraps=__import__("hmac").compare_digest
    ) as compare:
        for candidate in (bogus, other_lookup):
            anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {candidate}")
            assert anonymous.get("/api/v1/me/").status_code == 401
    assert compare.call_count == 2


@pytest.mark.parametrize("bad", ["", "x", "bax_", "bax_short_secret", "nope_0123456789_" + "a" * 40])
def test_parse_rejects_malformed_keys(bad):
    assert ApiKey.parse(bad) is None


def test_generate_rejects_unknown_and_empty_scopes(acme):
    with pytest.raises(ValueError, match="unknown scope"):
        ApiKey.generate(acme.platform, ["admin"])
    with pytest.raises(ValueError, match="at least one scope"):
        ApiKey.generate(acme.platform, [])


def test_valid_key_authenticates_and_records_last_use(acme):
    response = acme.client().get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json() == {
        "platform": "acme",
        "key_prefix": acme.key.prefix,
        "scopes": ["submit", "lookup", "read"],
        "default_region": "DE",
        "limits": {
            "max_batch_sellers": 1000,
            "max_seller_indicators": 100,
            "max_lookup_indicators": 100,
            "max_body_bytes": 4 * 1024 * 1024,
        },
    }
    acme.key.refresh_from_db()
    assert acme.key.last_used_at is not None


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer", "authentication_failed"),
        ("Basic dXNlcjpwYXNz", "authentication_failed"),
        ("Bearer not-a-key", "authentication_failed"),
        ("Bearer bax_0123456789_" + "A" * 43, "authentication_failed"),
        ("Bearer a b", "authentication_failed"),
    ],
)
def test_missing_malformed_or_unknown_key_is_401_in_the_error_shape(anonymous, acme, header, code):
    if header:
        anonymous.credentials(HTTP_AUTHORIZATION=header)
    response = anonymous.get("/api/v1/me/")
    assert_error(response, 401, code)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401(acme):
    call_command("revoke_api_key", acme.key.prefix, stdout=StringIO())
    error = assert_error(acme.client().get("/api/v1/me/"), 401, "authentication_failed")
    assert "revoked" in error["message"]


def test_inactive_platform_key_is_401(acme):
    Platform.objects.filter(pk=acme.platform.pk).update(active=False)
    assert_error(acme.client().get("/api/v1/me/"), 401, "authentication_failed")


def test_wrong_scope_is_403_naming_the_scope(acme):
    _, secret = ApiKey.generate(acme.platform, ["submit"])
    acme.secret = secret
    error = assert_error(acme.client().get("/api/v1/me/"), 403, "permission_denied")
    assert "'read'" in error["message"]


def test_failed_attempts_are_logged_without_the_secret(anonymous, acme, caplog):
    acme.key.revoke()
    with caplog.at_level(logging.WARNING, logger="exchange.auth"):
        acme.client().get("/api/v1/me/")
        anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {acme.secret[:-3]}xyz")
        anonymous.get("/api/v1/me/")
    text = caplog.text
    secret_part = acme.secret.split("_", 2)[2]
    assert "reason=revoked" in text and acme.key.prefix in text
    assert secret_part not in text and secret_part[:-3] not in text


def test_throttling_is_per_key_and_uses_the_error_shape(acme, bazaar):
    from django.core.cache import cache

    cache.clear()
    with override_settings(
        REST_FRAMEWORK={
            **__import__("django.conf").conf.settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"},
        }
    ):
        from accounts.authentication import ApiKeyRateThrottle

        with mock.patch.object(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/min"}):
            client = acme.client()
            assert client.get("/api/v1/me/").status_code == 200
            assert client.get("/api/v1/me/").status_code == 200
            error = assert_error(client.get("/api/v1/me/"), 429, "throttled")
            assert error["details"]["retry_after_seconds"] > 0
            assert bazaar.client().get("/api/v1/me/").status_code == 200
    cache.clear()


def test_the_rate_is_a_sliding_window_and_says_when_the_next_request_fits(acme):
    """ApiKeyRateThrottle at 4/min, with a clock of our own: four requests pass; the fifth waits for the next
    window and a quarter of it, until the full window before weighs less than 3 of 4; 30 s into that window
    the previous one weighs half, so its 4 count as 2; a refused request is not counted."""
    from django.core.cache.backends.locmem import LocMemCache
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from accounts.authentication import ApiKeyRateThrottle, Partner

    clock = [600.0]  # the start of a window (windows are whole multiples of 60 s)
    store = LocMemCache("throttle-test", {})

    class FourPerMinute(ApiKeyRateThrottle):
        rate = "4/min"
        cache = store

        def timer(self) -> float:
            return clock[0]

    request = Request(APIRequestFactory().get("/api/v1/me/"))
    request.user = Partner(acme.key)  # type: ignore[assignment]  # DRF's user is whatever auth returns

    def ask() -> tuple[bool, float | None]:
        throttle = FourPerMinute()
        allowed = throttle.allow_request(request, APIView())
        return allowed, None if allowed else throttle.wait()

    assert [ask()[0] for _ in range(4)] == [True] * 4
    clock[0] = 610.0
    assert ask() == (False, 65.0)  # 50 s to the next window, then 15 s for 4 x (1 - 15/60) = 3
    assert ask() == (False, 65.0)  # refused requests leave the count as it was
    clock[0] = 690.0  # 30 s into the next window: 4 x 0.5 = 2
    assert [ask()[0] for _ in range(2)] == [True, True]
    allowed, wait = ask()  # 2 + 2 counted: one more fits when the 4 before weigh 1, at 45 s
    assert not allowed and wait == pytest.approx(15.0)
    clock[0] = 720.0  # a new window: the 2 of the one before weigh 2 at first
    assert [ask()[0] for _ in range(3)] == [True, True, False]


def test_unknown_api_path_is_json_404(acme):
    assert_error(acme.client().get("/api/v1/nothing-here/"), 404, "not_found")


def test_schema_and_docs_are_public_and_local(client):
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()


# --- operator commands --------------------------------------------------------------------------------


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_platform_command():
    out, _ = run(
        "create_platform", "acme", "--name", "Acme", "--report-to", "tns@acme.test", "--cadence", "weekly"
    )
    platform = Platform.objects.get(slug="acme")
    assert platform.report_recipients == ["tns@acme.test"] and platform.report_cadence == "weekly"
    assert "Created platform acme" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad slug!", "--name", "X"], "invalid slug"),
        (["ok", "--name", "X", "--report-to", "not-an-email"], "not a valid email"),
        (["ok", "--name", "X", "--default-region", "Germany"], "two-letter country code"),
    ],
)
def test_create_platform_rejects_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_platform", *args)
    assert not Platform.objects.exists()


def test_create_platform_twice_is_refused_unless_update():
    run("create_platform", "acme", "--name", "Acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_platform", "acme", "--name", "Acme")
    run("create_platform", "acme", "--name", "Acme Two", "--update")
    assert Platform.objects.get().name == "Acme Two"


def test_create_platform_update_changes_only_the_options_given():
    # issue 19, item 12: an update that did not repeat --report-to and --default-region wiped them.
    run(
        "create_platform", "acme", "--name", "Acme", "--report-to", "tns@acme.test", "--report-to",
        "ops@acme.test", "--cadence", "weekly", "--default-region", "de",
    )  # fmt: skip
    out, _ = run("create_platform", "acme", "--cadence", "daily", "--update")
    platform = Platform.objects.get()
    assert (platform.name, platform.report_recipients, platform.report_cadence, platform.default_region) == (
        "Acme",
        ["tns@acme.test", "ops@acme.test"],
        "daily",
        "DE",
    )
    assert "Updated platform acme (Acme), reports: daily" in out
    assert AuditEntry.objects.get(action="platform_changed").details == {"fields": ["report_cadence"]}
    run("create_platform", "acme", "--report-to", "new@acme.test", "--default-region", "", "--update")
    platform.refresh_from_db()
    assert (platform.report_recipients, platform.default_region) == (["new@acme.test"], "")
    assert (platform.name, platform.report_cadence) == ("Acme", "daily")


def test_create_platform_needs_a_name_to_create():
    with pytest.raises(CommandError, match="--name is required"):
        run("create_platform", "acme")
    with pytest.raises(CommandError, match="--name is required"):
        run("create_platform", "acme", "--update")
    assert not Platform.objects.exists()


def test_create_api_key_prints_the_key_alone_on_the_last_line(acme):
    out, err = run("create_api_key", "acme", "--scopes", "submit,lookup")
    full = out.strip().splitlines()[-1]
    key = ApiKey.objects.get(lookup=ApiKey.parse(full))
    assert key.matches(full) and key.scopes == ["submit", "lookup"]
    assert full not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["nope", "--scopes", "read"], "no platform"), (["acme", "--scopes", "read,admin"], "unknown scope")],
)
def test_create_api_key_rejects_bad_input(acme, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *args)


def test_revoke_api_key_command(acme):
    out, _ = run("revoke_api_key", acme.key.prefix)
    assert "Revoked" in out
    acme.key.refresh_from_db()
    assert acme.key.is_revoked
    with pytest.raises(CommandError, match="already revoked"):
        run("revoke_api_key", acme.key.prefix)
    with pytest.raises(CommandError, match="no API key"):
        run("revoke_api_key", "bax_ffffffffff")


def test_create_analyst_both_roles(acme, tmp_path):
    from django.contrib.auth.models import User

    password = tmp_path / "pw"
    password.write_text("a sufficiently long passphrase\n")
    run("create_analyst", "alice", "--exchange", "--email", "alice@ex.test", "--password-file", str(password))
    run("create_analyst", "bob", "--platform", "acme")
    alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
    assert alice.check_password("a sufficiently long passphrase") and alice.is_staff
    assert alice.analyst.is_exchange_analyst and list(alice.groups.values_list("name", flat=True)) == [
        "Exchange analyst"
    ]
    assert bob.analyst.platform == acme.platform and not bob.has_usable_password()
    assert list(bob.groups.values_list("name", flat=True)) == ["Partner analyst"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--platform", "nope"], "no platform"),
        (["x", "--exchange", "--email", "bad"], "not a valid email"),
        (["x", "--exchange", "--password-file", "/nonexistent"], "cannot read"),
    ],
)
def test_create_analyst_rejects_bad_input(acme, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_analyst", *args)


def test_create_analyst_rejects_a_weak_password(tmp_path):
    password = tmp_path / "pw"
    password.write_text("123")
    with pytest.raises(CommandError, match="password-file"):
        run("create_analyst", "x", "--exchange", "--password-file", str(password))


def test_roles_are_created_by_migration_with_permissions():
    from django.contrib.auth.models import Group

    exchange = Group.objects.get(name="Exchange analyst")
    partner = Group.objects.get(name="Partner analyst")
    assert exchange.permissions.filter(codename="change_platform").exists()
    assert not partner.permissions.filter(codename="change_platform").exists()


def test_database_outage_is_a_clean_503(acme):
    from django.db import OperationalError

    with mock.patch(
        "exchange.views.MeView.get", side_effect=OperationalError("server closed the connection")
    ):
        response = acme.client().get("/api/v1/me/")
    error = assert_error(response, 503, "service_unavailable")
    assert "retry" in error["message"].lower()
    assert response["Retry-After"] == "5"


def test_the_key_is_read_with_its_platform_in_one_statement(acme, django_assert_num_queries):
    """Every partner request reads its key by lookup (on PostgreSQL one prepared statement built from the
    models' columns, not the ORM's compiled query): every field of the key and of its platform as the ORM
    reads them, the platform without another query; an unknown lookup is None."""
    from accounts.authentication import _api_key_with_platform

    acme.key.revoked_at = None
    found = _api_key_with_platform(acme.key.lookup)
    expected = ApiKey.objects.select_related("platform").get(pk=acme.key.pk)
    assert found is not None
    for field in ApiKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    with django_assert_num_queries(0):
        platform = found.platform
    for field in Platform._meta.concrete_fields:
        assert getattr(platform, field.attname) == getattr(expected.platform, field.attname), field.name
    assert found._state.adding is False and found._state.db == "default"
    assert _api_key_with_platform("0" * 10) is None
