"""Production settings pass Django's deployment checklist, and the browsable API is off in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "EXCHANGE_"))}
    env.pop("DEBUG", None)
    env.update(
        {
            "SECRET_KEY": "prod-" + "Kq7#xW2p!Lm9@Vz4$Tr8&Ny3*Hb6^Jd1" * 2,
            "EXCHANGE_PEPPERS": "1:cHJvZHVjdGlvbi1wZXBwZXItMzItYnl0ZXMtb3ItbW9yZS0hIQ==",
            "ALLOWED_HOSTS": "exchange.example.org",
            "CSRF_TRUSTED_ORIGINS": "https://exchange.example.org",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        }
    )
    return env


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets(tmp_path):
    for missing in ("SECRET_KEY", "EXCHANGE_PEPPERS"):
        env = production_env(tmp_path)
        env.pop(missing)
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0 and missing in result.stderr, missing


def test_browsable_api_is_off_in_production():
    assert not settings.DEBUG
    renderers = settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"]
    assert renderers == ["rest_framework.renderers.JSONRenderer"]


@pytest.mark.django_db
@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html"])
@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/sellers/", "/api/v1/clusters/", "/api/v1/nope/"])
def test_a_browser_gets_json_not_html(client, acme, accept, path):
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {acme.secret}"}):
        response = client.get(path, HTTP_ACCEPT=accept, **headers)
        assert response["Content-Type"].startswith("application/json"), (path, accept, response.status_code)
        assert b"<html" not in response.content.lower()
        assert response.status_code in {200, 401, 404, 406}


def test_the_licence_file_is_the_one_both_distributions_name():
    import tomllib

    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0].strip() == "Apache License"
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    for pyproject in (ROOT / "pyproject.toml", ROOT / "exchange" / "client" / "pyproject.toml"):
        assert tomllib.loads(pyproject.read_text())["project"]["license"] == "Apache-2.0", pyproject


def test_the_lock_pins_every_runtime_dependency_at_the_version_ci_runs():
    """requirements.lock (make lock) is what the Dockerfile and operators install; `make test` installs with it
    as a constraint, so the suite runs exactly those versions."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = pinned
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, runtime):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but not in requirements.lock (run make lock)"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], str(requirement.specifier))
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, locked {pinned}"
