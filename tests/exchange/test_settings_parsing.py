import subprocess
import sys
from pathlib import Path

import pytest

from exchange.config import (
    PREPARE_ONLY_WHEN_ASKED,
    ConfigError,
    envbool,
    envint,
    envlist,
    envsecret,
    parse_database_url,
    parse_peppers,
    parse_replica_url,
)

BASE = Path("/srv/app")
GOOD_PEPPER = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes


def test_unset_database_url_default_is_a_sqlite_file_in_the_project():
    db = parse_database_url("sqlite:///var/exchange.sqlite3", BASE)
    assert db == {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/app/var/exchange.sqlite3"}


def test_absolute_sqlite_path():
    assert parse_database_url("sqlite:////tmp/x.db", BASE)["NAME"] == "/tmp/x.db"


def test_postgres_url_is_parsed_for_psycopg():
    db = parse_database_url(
        "postgres://ex:p%40ss@db.internal:6432/exchange?sslmode=require&conn_max_age=60", BASE
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "exchange",
        "ex",
        "p@ss",
        "db.internal",
        "6432",
    )
    assert db["OPTIONS"] == {
        "sslmode": "require",
        "options": "-c jit=off",
        "prepare_threshold": PREPARE_ONLY_WHEN_ASKED,
    }
    assert db["CONN_MAX_AGE"] == 60
    assert parse_database_url("postgres://h/db", BASE)["CONN_MAX_AGE"] == 60


def test_postgres_connections_compile_no_jit_unless_the_url_asks() -> None:
    """Issue 17: right after a bulk load a 1 ms lookup was estimated dear enough for JIT and spent tens of ms
    compiling on each execution; the app's connections turn JIT off, and `options=` in the URL still wins."""
    assert parse_database_url("postgres://h/db", BASE)["OPTIONS"]["options"] == "-c jit=off"
    own = parse_database_url("postgres://h/db?options=-c%20work_mem%3D64MB", BASE)
    assert own["OPTIONS"]["options"] == "-c work_mem=64MB"


def test_statements_are_prepared_where_the_code_asks_unless_the_url_says_none() -> None:
    """Issue 17: Django passes prepare_threshold=None to psycopg unless OPTIONS say otherwise, which turned the
    key read's and the lookup's `prepare=True` into no-ops. The default prepares only those (a threshold never
    reached); `none` turns preparing off for a pooler that cannot keep prepared statements, an integer is
    psycopg's own threshold, anything else names the option."""

    def threshold(url: str) -> int | None:
        return parse_database_url(url, BASE)["OPTIONS"]["prepare_threshold"]

    assert threshold("postgres://h/db") == PREPARE_ONLY_WHEN_ASKED
    assert threshold("postgres://h/db?prepare_threshold=None") is None
    assert threshold("postgres://h/db?prepare_threshold=5") == 5
    with pytest.raises(ConfigError, match="prepare_threshold must be a whole number or 'none', got '-1'"):
        parse_database_url("postgres://h/db?prepare_threshold=-1", BASE)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unsupported scheme 'mysql'"),
        ("not a url", "unsupported scheme"),
        ("postgres://host:5432/", "no database name"),
        ("postgres://host:99999999/db", "invalid port"),
        ("postgres://host/db?conn_max_age=soon", "conn_max_age must be an integer"),
        ("sqlite://", "sqlite URLs look like"),
    ],
)
def test_malformed_database_url_names_the_setting(url, message):
    with pytest.raises(ConfigError, match="DATABASE_URL") as excinfo:
        parse_database_url(url, BASE)
    assert message in str(excinfo.value)


def test_database_url_error_does_not_echo_the_password():
    with pytest.raises(ConfigError) as excinfo:
        parse_database_url("postgres://u:hunter2@host/", BASE)
    assert "hunter2" not in str(excinfo.value)


POSTGRES_PRIMARY = parse_database_url("postgres://ex@db.internal/exchange", BASE)


def test_replica_url_is_a_second_postgres_entry_mirroring_default_in_tests():
    replica = parse_replica_url("postgres://reader:p%40ss@replica.internal:5433/exchange", POSTGRES_PRIMARY)
    assert replica is not None
    assert replica["ENGINE"] == "django.db.backends.postgresql"
    assert (replica["HOST"], replica["PORT"], replica["USER"], replica["PASSWORD"]) == (
        "replica.internal",
        "5433",
        "reader",
        "p@ss",
    )
    # The test runner creates no second database: "replica" reads the test database.
    assert replica["TEST"] == {"MIRROR": "default"}
    # A short connect timeout so an unreachable replica falls back to the primary in seconds; the URL wins.
    assert replica["OPTIONS"] == {
        "connect_timeout": "3",
        "options": "-c jit=off",
        "prepare_threshold": PREPARE_ONLY_WHEN_ASKED,
    }
    slower = parse_replica_url("postgres://r/x?connect_timeout=10", POSTGRES_PRIMARY)
    assert slower is not None and slower["OPTIONS"]["connect_timeout"] == "10"


def test_unset_replica_url_means_no_replica():
    assert parse_replica_url("", POSTGRES_PRIMARY) is None
    assert parse_replica_url("  ", POSTGRES_PRIMARY) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///replica.sqlite3", "must be a postgres:// URL"),
        ("mysql://x/y", "must be a postgres:// URL"),
        ("replica.internal:5432", "must be a postgres:// URL"),
        ("postgres://host:port/db", "invalid port"),
        ("postgres://host/", "no database name"),
    ],
)
def test_malformed_replica_url_names_the_replica_setting(url, message):
    with pytest.raises(ConfigError, match="DATABASE_REPLICA_URL") as excinfo:
        parse_replica_url(url, POSTGRES_PRIMARY)
    assert message in str(excinfo.value)


def test_replica_is_refused_beside_a_sqlite_primary():
    sqlite = parse_database_url("sqlite:///var/exchange.sqlite3", BASE)
    with pytest.raises(ConfigError, match="DATABASE_REPLICA_URL needs a PostgreSQL primary"):
        parse_replica_url("postgres://replica.internal/exchange", sqlite)


def test_replica_url_error_does_not_echo_the_password():
    with pytest.raises(ConfigError) as excinfo:
        parse_replica_url("postgres://u:hunter2@host:port/db", POSTGRES_PRIMARY)
    assert "hunter2" not in str(excinfo.value)


def test_peppers_are_versioned_and_the_highest_is_current():
    peppers = parse_peppers(f"1:{GOOD_PEPPER}, 2:{GOOD_PEPPER}")
    assert sorted(peppers) == [1, 2]
    assert max(peppers) == 2
    assert len(peppers[1]) == 32


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "no pepper given"),
        ("abc", "entries look like"),
        (f"x:{GOOD_PEPPER}", "version must be a positive integer"),
        (f"0:{GOOD_PEPPER}", "version must be a positive integer"),
        (f"1:{GOOD_PEPPER},1:{GOOD_PEPPER}", "given twice"),
        ("1:not base64!!", "not valid base64"),
        ("1:c2hvcnQ=", "at least 32 are required"),
    ],
)
def test_bad_peppers_are_refused(raw, message):
    with pytest.raises(ConfigError, match="EXCHANGE_PEPPERS") as excinfo:
        parse_peppers(raw)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("off", False), ("", False)])
def test_envbool(raw, value):
    assert envbool("DEBUG", env={"DEBUG": raw}) is value


def test_envbool_rejects_garbage():
    with pytest.raises(ConfigError, match="DEBUG must be a boolean"):
        envbool("DEBUG", env={"DEBUG": "maybe"})


def test_envint_and_envlist():
    assert envint("EMAIL_PORT", 25, env={}) == 25
    assert envint("EMAIL_PORT", 25, env={"EMAIL_PORT": "2525"}) == 2525
    with pytest.raises(ConfigError, match="EMAIL_PORT must be an integer"):
        envint("EMAIL_PORT", 25, env={"EMAIL_PORT": "smtp"})
    assert envlist("ALLOWED_HOSTS", env={"ALLOWED_HOSTS": "a.example, b.example,"}) == [
        "a.example",
        "b.example",
    ]


def test_secret_from_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    assert envsecret("SECRET_KEY", env={"SECRET_KEY_FILE": str(path)}) == "s3cret"
    with pytest.raises(ConfigError, match="SECRET_KEY_FILE: cannot read"):
        envsecret("SECRET_KEY", env={"SECRET_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="either SECRET_KEY or SECRET_KEY_FILE"):
        envsecret("SECRET_KEY", env={"SECRET_KEY": "a", "SECRET_KEY_FILE": str(path)})


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


PRODUCTION_ENV = {
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "EXCHANGE_PEPPERS": f"1:{GOOD_PEPPER}",
    "ALLOWED_HOSTS": "exchange.example.org",
    "DATABASE_URL": "sqlite:////tmp/exchange-deploy-check.sqlite3",
}


def test_production_process_refuses_to_start_without_a_pepper():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "EXCHANGE_PEPPERS"}
    result = _manage(env, "check")
    assert result.returncode != 0
    assert "EXCHANGE_PEPPERS" in result.stderr


def test_production_process_refuses_a_malformed_database_url():
    result = _manage({**PRODUCTION_ENV, "DATABASE_URL": "postgres://host:port/db"}, "check")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = _manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


SHOW_DATABASES = (
    "from django.conf import settings; "
    "print(sorted(settings.DATABASES), getattr(settings, 'DATABASE_ROUTERS', []), "
    "settings.DATABASES.get('replica', {}).get('HOST'))"
)


def test_a_replica_url_configures_the_replica_and_its_router(tmp_path):
    secret = tmp_path / "replica-url"
    secret.write_text("postgres://reader@replica.internal/exchange\n")
    env = {**PRODUCTION_ENV, "DATABASE_URL": "postgres://ex@db.internal/exchange"}
    result = _manage({**env, "DATABASE_REPLICA_URL_FILE": str(secret)}, "shell", "-v0", "-c", SHOW_DATABASES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == (
        "['default', 'replica'] ['exchange.routers.ReplicaRouter'] replica.internal"
    )
    without = _manage(env, "shell", "-v0", "-c", SHOW_DATABASES)
    assert without.stdout.split("\n")[0] == "['default'] [] None"


def test_production_process_refuses_a_sqlite_replica():
    result = _manage({**PRODUCTION_ENV, "DATABASE_REPLICA_URL": "sqlite:////tmp/replica.sqlite3"}, "check")
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URL must be a postgres:// URL" in result.stderr
