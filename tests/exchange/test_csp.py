"""The Content-Security-Policy header: admin pages, the API and its docs page all carry it.

The browser test (tests/system/test_admin_browser.py) shows that the admin, the cluster picture and Swagger UI work
under it; this one pins the policy itself.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.admin_world import logged_in

REQUIRED = {
    "default-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def directives(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    parts = [part.strip().split(None, 1) for part in header.split(";") if part.strip()]
    return {name: (value[0] if value else "") for name, *value in parts}


def assert_policy(response) -> None:
    policy = directives(response)
    for name, value in REQUIRED.items():
        assert policy.get(name) == value, (name, policy)
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/docs/", "/api/v1/schema/", "/healthz"])
def test_public_pages_carry_the_content_security_policy(path):
    response = Client().get(path)
    assert response.status_code == 200
    assert_policy(response)


def test_admin_pages_carry_the_content_security_policy(alice):
    response = logged_in(alice).get("/admin/graph/actorcluster/")
    assert response.status_code == 200
    assert_policy(response)


def test_api_answers_carry_the_content_security_policy(acme):
    response = acme.client().get("/api/v1/sellers/")
    assert response.status_code == 200
    assert_policy(response)
    refused = Client().get("/api/v1/sellers/")
    assert refused.status_code in (401, 403)
    assert_policy(refused)


@pytest.mark.django_db
def test_api_docs_load_their_script_from_a_file_not_inline():
    html = Client().get("/api/v1/docs/").content.decode()
    assert "<script>" not in html and "<script src=" in html
