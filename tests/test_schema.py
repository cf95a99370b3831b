from io import StringIO

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_openapi_schema_validates_without_warnings(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path), stderr=StringIO())
    schema = yaml.safe_load(path.read_text())
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/submissions/",
        "/api/v1/sellers/",
        "/api/v1/sellers/{seller_ref}/",
        "/api/v1/sellers/{seller_ref}/retract/",
        "/api/v1/lookups/",
    } <= paths
    submission = schema["paths"]["/api/v1/submissions/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in submission["parameters"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_docs_page_loads_its_assets_locally(client):
    html = client.get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html
