"""Small, typed parsers for environment-driven settings (no Django imports).

Each parser raises `ImproperlyConfigured`-compatible `ConfigError` naming the variable, so that a
misconfigured process refuses to start with a message an operator can act on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class ConfigError(Exception):
    """A setting read from the environment is missing or malformed."""


def envbool(name: str, default: str = "False", env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    value = env.get(name, default).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def envint(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def envfloat(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def envlist(name: str, default: str = "", env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


def envsecret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    env = os.environ if env is None else env
    value = env.get(name)
    path = env.get(f"{name}_FILE")
    if value and path:
        raise ConfigError(f"set either {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path!r} ({exc.strerror})") from None
    return value or None


def parse_redis_url(url: str) -> str:
    """REDIS_URL as given, or "" when unset; refused unless redis://host[:port][/db], rediss:// or unix://."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise ConfigError("REDIS_URL: invalid port") from None
    if parts.scheme == "unix" and parts.path:
        return url
    if (
        parts.scheme not in {"redis", "rediss"}
        or not parts.hostname
        or not re.fullmatch(r"/?\d*", parts.path)
    ):
        raise ConfigError(
            "REDIS_URL must look like redis://[:password@]host[:port][/db], rediss://... or unix:///path.sock"
        )
    return url


POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "pgsql"})


def parse_database_url(url: str, base_dir: Path, source: str = "DATABASE_URL") -> dict[str, Any]:
    """Turn DATABASE_URL (or another variable named by `source`) into a Django DATABASES entry.

    Supported: ``sqlite:///relative/or/absolute.sqlite3``, ``postgres://user:pass@host:port/name?opt=..``
    (also ``postgresql://``). Query options are passed to psycopg (e.g. ``sslmode=require``), except
    ``conn_max_age`` which Django itself uses.

    Why not dj-database-url: we support two engines, and what this adds is what it does not do: a relative
    sqlite path is relative to the project (not the working directory, so `manage.py` works from anywhere),
    ``conn_max_age`` and health checks come from the URL with a default, and every mistake is a ConfigError
    naming DATABASE_URL with the password redacted (dj-database-url raises a bare ValueError for an unknown
    scheme), and a wrapper restoring all that would be longer than this function.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        raw_path = unquote(parts.path)
        if parts.netloc or not raw_path or raw_path == "/":
            raise ConfigError(
                f"{source}: sqlite URLs look like sqlite:///db.sqlite3 or sqlite:////abs/path, got {url!r}"
            )
        path = raw_path[1:]  # sqlite:///x -> "x" (relative), sqlite:////x -> "/x" (absolute)
        name = path if path == ":memory:" else str((base_dir / path) if not path.startswith("/") else path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in POSTGRES_SCHEMES:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ConfigError(f"{source}: no database name in {_redact(url)!r}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{source}: invalid port in {_redact(url)!r}") from None
        options: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        # No JIT compilation on the app's connections unless the URL says otherwise (`options=...`): PostgreSQL
        # compiles a query whose *estimated* cost passes jit_above_cost, and right after a bulk load (no
        # statistics yet) a 1 ms lookup was estimated that dear and spent tens of milliseconds compiling on
        # every execution. The app's queries are index probes and set-based writes that JIT does not speed up.
        options.setdefault("options", "-c jit=off")
        options["prepare_threshold"] = _prepare_threshold(options.get("prepare_threshold"), source)
        # Persistent connections by default: a new PostgreSQL connection per request costs milliseconds.
        conn_max_age = options.pop("conn_max_age", "60")
        try:
            max_age = int(conn_max_age)
        except ValueError:
            raise ConfigError(f"{source}: conn_max_age must be an integer, got {conn_max_age!r}") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(port or ""),
            "CONN_MAX_AGE": max_age,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ConfigError(
        f"{source}: unsupported scheme {scheme or '(none)'!r}; use sqlite:///file or postgres://..."
    )


# psycopg prepares a statement on its connection only where the code asks for it (`execute(..., prepare=True)`:
# the API key read and the lookup, which every partner request runs), never by counting executions: this
# threshold is never reached. Django's default (None) turns preparing off altogether, which made those requests
# parse and plan their statements every time (the lookup's CTE: about 1.5 ms of a 4.6 ms lookup in-process).
# `?prepare_threshold=none` restores that for a pooler in transaction mode that cannot keep prepared statements
# (PgBouncer before 1.21); an integer prepares any server-bound statement run that many times on a connection.
PREPARE_ONLY_WHEN_ASKED = 1 << 30


def _prepare_threshold(raw: str | None, source: str) -> int | None:
    if raw is None:
        return PREPARE_ONLY_WHEN_ASKED
    if raw.strip().lower() == "none":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(f"{source}: prepare_threshold must be a whole number or 'none', got {raw!r}")
    return int(raw)


def parse_replica_url(url: str, primary: Mapping[str, Any]) -> dict[str, Any] | None:
    """DATABASE_REPLICA_URL: a read-only PostgreSQL replica of the primary, or None when unset.

    PostgreSQL only, and only beside a PostgreSQL primary: a replica is a streaming (or otherwise replicated)
    copy of the primary, which SQLite has no notion of. The connection gets a short connect timeout unless the
    URL sets one, so an unreachable replica host costs a partner read seconds before it falls back to the
    primary, not the operating system's TCP timeout. In tests it mirrors the default database (no second test
    database is created; reads "on the replica" read the test database).
    """
    source = "DATABASE_REPLICA_URL"
    url = url.strip()
    if not url:
        return None
    if urlsplit(url).scheme.lower() not in POSTGRES_SCHEMES:
        raise ConfigError(f"{source} must be a postgres:// URL (a replica of the PostgreSQL primary)")
    if not str(primary.get("ENGINE", "")).endswith("postgresql"):
        raise ConfigError(f"{source} needs a PostgreSQL primary: set DATABASE_URL=postgres://... too")
    replica = parse_database_url(url, Path(), source)  # the base directory only places SQLite files
    replica["OPTIONS"].setdefault("connect_timeout", "3")
    replica["TEST"] = {"MIRROR": "default"}
    return replica


def parse_kind_values(raw: str, source: str, parse: Callable[[str], object], what: str) -> dict[str, Any]:
    """``kind:value,kind:value`` -> {kind: parse(value)}; `parse` raises ValueError for a bad value. Kinds are
    checked by the caller."""
    out: dict[str, Any] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        kind, sep, value = item.partition(":")
        try:
            if not sep:
                raise ValueError
            out[kind.strip()] = parse(value.strip())
        except ValueError:
            raise ConfigError(f"{source}: entries look like <kind>:<{what}>, got {item!r}") from None
    return out


def _strength(value: str) -> str:
    if value not in ("strong", "weak"):
        raise ValueError
    return value


def parse_strengths(raw: str, source: str = "EXCHANGE_LINK_STRENGTHS") -> dict[str, str]:
    """``image:strong,document:weak`` -> {"image": "strong", "document": "weak"}; kinds are checked by the caller."""
    return parse_kind_values(raw, source, _strength, "strong|weak")


def _similarity(value: str) -> float:
    number = float(value)
    if not 0.6 <= number <= 1.0:
        raise ValueError
    return number


def parse_similarities(raw: str, source: str) -> dict[str, float]:
    """``person_name:0.72`` -> {"person_name": 0.72}: Dice thresholds from 0.6 (the blocking's LSH bands are
    tuned for 0.7-0.8; below 0.6 near pairs escape it) to 1.0."""
    return parse_kind_values(raw, source, _similarity, "number from 0.6 to 1.0")


def parse_thresholds(raw: str, source: str = "EXCHANGE_LINK_THRESHOLDS") -> dict[str, int]:
    """``phone:40,store_name:5`` -> {"phone": 40, "store_name": 5}; kinds are checked by the caller."""
    out: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        kind, sep, number = item.partition(":")
        if not sep or not number.strip().isdigit() or int(number) < 2:
            raise ConfigError(f"{source}: entries look like <kind>:<integer >= 2>, got {item!r}")
        out[kind.strip()] = int(number)
    return out


def parse_networks(raw: str, source: str) -> list[str]:
    """``10.0.0.0/8,127.0.0.1`` -> ["10.0.0.0/8", "127.0.0.1/32"] (CIDR networks, IPv4 or IPv6)."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{source}: {item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return networks


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def parse_peppers(raw: str, source: str = "EXCHANGE_PEPPERS") -> dict[int, bytes]:
    """Parse ``1:<base64>,2:<base64>`` into {version: secret}. The highest version is current.

    Each secret must decode to at least 32 bytes: the pepper is what makes stored tokens useless to
    anyone who copies the database, so a short one defeats the purpose.
    """
    peppers: dict[int, bytes] = {}
    for item in (part.strip() for part in raw.replace("\n", ",").split(",")):
        if not item:
            continue
        version_text, sep, secret_text = item.partition(":")
        if not sep:
            raise ConfigError(f"{source}: entries look like <version>:<base64 secret>, got {item[:3]!r}...")
        try:
            version = int(version_text)
        except ValueError:
            raise ConfigError(f"{source}: version must be a positive integer, got {version_text!r}") from None
        if version < 1:
            raise ConfigError(f"{source}: version must be a positive integer, got {version}")
        if version in peppers:
            raise ConfigError(f"{source}: version {version} is given twice")
        try:
            secret = base64.b64decode(secret_text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source}: the secret of version {version} is not valid base64") from None
        if len(secret) < 32:
            raise ConfigError(
                f"{source}: the secret of version {version} is {len(secret)} bytes; at least 32 are required"
            )
        peppers[version] = secret
    if not peppers:
        raise ConfigError(f"{source}: no pepper given")
    return peppers
