"""The reference client as a partner installs it: the distribution in exchange/client/pyproject.toml.

The fast tests keep its build config honest against the checkout (the same pins as the server, exactly the
client's import closure in the wheel). The slow one does what the README tells a partner to do, `pip install
./exchange/client` into a fresh virtual environment, and proves there that Django is absent, the client
imports, its command line runs and the published hashing vectors hash the same.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from exchange.client import cli
from exchange.documents import DOCUMENT_PINNED_LIBRARIES
from exchange.normalization import PINNED_LIBRARIES
from exchange.perceptual import PERCEPTUAL_PINNED_LIBRARIES, pdq_variants
from fixtures import images

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "exchange" / "client"
CLIENT_PYPROJECT: dict[str, Any] = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
SERVER_PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VECTORS_FILE = ROOT / "docs" / "hashing-vectors-v1.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
DISTRIBUTION = CLIENT_PYPROJECT["project"]["name"]
PIP_INSTALL_TIMEOUT = 300  # seconds; a cold pip cache downloads phonenumbers (~9 MB) and hatchling


def exact_pins(dependencies: list[str]) -> dict[str, str]:
    """``name==version`` requirements as {name: version}; anything not pinned exactly maps to ``None``."""
    pins: dict[str, Any] = {}
    for requirement in dependencies:
        name, _, version = requirement.partition("==")
        pins[name.split("[")[0].strip()] = version.strip() or None
    return pins


def wheel_modules() -> dict[str, str]:
    """The wheel's files as the client build config names them: {source relative to exchange/client: path}."""
    return dict(CLIENT_PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"])


def module_name(path: str) -> str:
    """``exchange/client/api.py`` -> ``exchange.client.api``; ``exchange/__init__.py`` -> ``exchange``."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# --- the build config ----------------------------------------------------------------------------------------


def test_client_depends_on_exactly_the_pinned_normalisation_libraries() -> None:
    """The client needs nothing but the hashing spec's libraries, at the server's exact versions: a partner
    normalising with other data would hash the same value differently."""
    client_pins = exact_pins(CLIENT_PYPROJECT["project"]["dependencies"])
    # and PDQ's hasher and decoder, and the PDF text extractor of document fingerprints (issue 13)
    pinned = PINNED_LIBRARIES | PERCEPTUAL_PINNED_LIBRARIES | DOCUMENT_PINNED_LIBRARIES
    server_pins = {
        name: version
        for name, version in exact_pins(SERVER_PYPROJECT["project"]["dependencies"]).items()
        if name in pinned
    }
    # numpy is only the array type between Pillow and pdqhash (which does not declare it): not pinned
    assert {name: version for name, version in client_pins.items() if version is not None} == pinned
    assert [name for name, version in client_pins.items() if version is None] == ["numpy>=1.26"]
    assert {name: version for name, version in client_pins.items() if name in pinned} == server_pins


def test_client_supports_the_servers_python() -> None:
    assert CLIENT_PYPROJECT["project"]["requires-python"] == SERVER_PYPROJECT["project"]["requires-python"]


def test_wheel_ships_every_client_module_and_the_siblings_it_imports() -> None:
    """The force-include list is exactly the client's files plus its import closure inside ``exchange``
    (computed in a fresh interpreter), so a new client module or a new import cannot be left out."""
    shipped = wheel_modules()
    for source, target in shipped.items():
        assert (CLIENT_DIR / source).resolve() == (ROOT / target).resolve(), (source, target)

    client_files = {f"exchange/client/{path.name}" for path in CLIENT_DIR.glob("*.py")}
    assert client_files <= set(shipped.values())

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, exchange.client, exchange.client.cli\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'exchange')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    imported = set(json.loads(loaded.stdout)) | {"exchange.client.__main__"}
    assert {module_name(path) for path in shipped.values()} == imported
    assert (
        "exchange.hashing" not in imported
    )  # the server's keying of transport hashes; the client never needs it


def test_console_script_is_the_command_line_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert CLIENT_PYPROJECT["project"]["scripts"] == {"exchange-client": "exchange.client.cli:console_script"}
    vector = VECTORS["vectors"][0]
    monkeypatch.setattr(
        sys, "argv", ["exchange-client", "hash", "--kind", vector["kind"], "--", vector["input"]]
    )
    assert cli.console_script() == 0
    assert capsys.readouterr().out.strip() == vector["transport_hash"]

    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"], stdout=out, prog=cli.SCRIPT_PROG)
    assert exited.value.code == 0


# --- installed alone ---------------------------------------------------------------------------------------------

PROBE = r"""
import importlib.metadata, importlib.util, json, sys

vectors = json.load(open(sys.argv[1], encoding="utf-8"))
report = {"django": importlib.util.find_spec("django") is not None}
import exchange, exchange.client, exchange.client.cli
from exchange.normalization import NormalizationError, normalize, transport_hash

report["exchange_file"] = exchange.__file__
report["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("exchange", "django", "rest_framework"))
report["server_modules"] = [
    name for name in ("exchange.models", "exchange.views", "exchange.hashing", "exchange.settings", "accounts", "graph")
    if importlib.util.find_spec(name) is not None
]
report["files"] = sorted(
    str(path) for path in importlib.metadata.files(sys.argv[2]) if str(path).endswith(".py")
)
report["versions"] = {name: importlib.metadata.version(name) for name in json.loads(sys.argv[3])}
report["hashes"] = [
    transport_hash(v["kind"], v["input"], v.get("default_region")) for v in vectors["vectors"]
]
report["normalized"] = [normalize(v["kind"], v["input"], v.get("default_region")) for v in vectors["vectors"]]
reasons = []
for v in vectors["rejected"]:
    try:
        normalize(v["kind"], v["input"], v.get("default_region"))
        reasons.append(None)
    except NormalizationError as error:
        reasons.append(error.reason)
report["rejections"] = reasons
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment (no site packages of ours) with `pip install ./exchange/client` done in it,
    exactly as the README has a partner do it. Fails, never skips, when the install cannot be done."""
    home = tmp_path_factory.mktemp("client-venv")
    venv = home / "venv"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONSTARTUP"}
    }
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=home, env=env)
    try:
        installed = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                str(CLIENT_DIR),
            ],
            capture_output=True,
            text=True,
            cwd=home,
            env=env,
            timeout=PIP_INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`pip install ./exchange/client` did not finish in {PIP_INSTALL_TIMEOUT} s", pytrace=False
        )
    if installed.returncode != 0:
        pytest.fail(
            "`pip install ./exchange/client` failed in a fresh virtual environment: it needs the package "
            "registry, or a pip cache holding hatchling and the pinned normalisation libraries.\n"
            + (installed.stdout + installed.stderr)[-4000:],
            pytrace=False,
        )
    return venv, env


def run_in(
    client_venv: tuple[Path, dict[str, str]], *args: str, isolated: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command of the client venv outside the checkout (so `exchange` cannot come from the work tree)."""
    venv, env = client_venv
    command = [str(venv / "bin" / args[0]), *args[1:]]
    if isolated and args[0] == "python":
        command.insert(1, "-I")
    return subprocess.run(command, capture_output=True, text=True, cwd=venv.parent, env=env, timeout=120)


@pytest.mark.slow
def test_installed_client_needs_no_server_and_hashes_the_published_vectors(
    client_venv: tuple[Path, dict[str, str]],
) -> None:
    venv, _ = client_venv
    done = run_in(
        client_venv,
        "python",
        "-c",
        PROBE,
        str(VECTORS_FILE),
        DISTRIBUTION,
        json.dumps(sorted(PINNED_LIBRARIES)),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["django"] is False
    assert run_in(client_venv, "python", "-c", "import django").returncode != 0
    assert Path(report["exchange_file"]).is_relative_to(venv)
    assert not [module for module in report["loaded"] if module.split(".")[0] != "exchange"]
    assert report["server_modules"] == []
    assert report["files"] == sorted(wheel_modules().values())
    assert report["versions"] == PINNED_LIBRARIES

    assert report["normalized"] == [vector["normalized"] for vector in VECTORS["vectors"]]
    assert report["hashes"] == [vector["transport_hash"] for vector in VECTORS["vectors"]]
    assert len(report["rejections"]) == len(VECTORS["rejected"])
    for vector, reason in zip(VECTORS["rejected"], report["rejections"], strict=True):
        assert reason is not None and vector["reason"] in reason, vector["kind"]


@pytest.mark.slow
def test_installed_command_line_runs_under_both_names(client_venv: tuple[Path, dict[str, str]]) -> None:
    script_help = run_in(client_venv, "exchange-client", "--help")
    assert script_help.returncode == 0, script_help.stderr
    assert script_help.stdout.startswith("usage: exchange-client ")
    module_help = run_in(client_venv, "python", "-m", "exchange.client", "--help")
    assert module_help.returncode == 0, module_help.stderr
    assert module_help.stdout.startswith("usage: python -m exchange.client ")
    for command in ("hash", "submit", "lookup", "retract"):
        assert command in script_help.stdout

    first_of_each_kind = {vector["kind"]: vector for vector in reversed(VECTORS["vectors"])}
    for kind, vector in sorted(first_of_each_kind.items()):
        region = ["--default-region", vector["default_region"]] if vector.get("default_region") else []
        hashed = run_in(
            client_venv, "exchange-client", "hash", "--kind", kind, *region, "--", vector["input"]
        )
        assert hashed.returncode == 0, (kind, hashed.stderr)
        assert hashed.stdout.strip() == vector["transport_hash"], kind


@pytest.mark.slow
def test_installed_client_hashes_image_rows_as_the_checkout_does(
    client_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """exchange.perceptual and PDQ's libraries come with the wheel: a photo hashes to the same PDQ there."""
    photo = images.save(images.product_photo(11, "watch"), tmp_path / "watch.jpg")
    csv_file = tmp_path / "reports.csv"
    csv_file.write_text(
        "seller_ref,status,reasons,reported_at,kind,value\ns-1,confirmed,counterfeit,2025-01-31,image,watch.jpg\n",
        encoding="utf-8",
    )
    payloads = tmp_path / "payloads.json"
    done = run_in(
        client_venv, "exchange-client", "submit", "--dry-run", "--payloads-file", str(payloads), str(csv_file)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    variants = pdq_variants(photo)
    [indicator] = json.loads(payloads.read_text(encoding="utf-8"))[0]["sellers"][0]["indicators"]
    assert indicator == {
        "kind": "image",
        "hash": variants.full.hex,
        "quality": variants.full.quality,
        "crops": list(variants.crops),
    }
