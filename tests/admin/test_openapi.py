"""admin.openapi: the document is valid, matches the router and is served."""

from __future__ import annotations

from openapi_spec_validator import validate

from authproxy.admin.app import create_admin_app
from authproxy.admin.openapi import OPENAPI
from authproxy.config.load import load_config
from authproxy.web.app import create_app
from tests.support.admin import Stack


def test_openapi_document_is_valid_and_complete() -> None:
    """The OpenAPI 3.1 document validates and lists exactly the admin routes."""
    validate(OPENAPI)
    app = create_admin_app(create_app(load_config()))
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == routes
    names = {r.name for r in app.router.routes() if r.name}
    operations = {
        op["operationId"]
        for item in OPENAPI["paths"].values()
        for k, op in item.items()
        if k != "parameters"
    }
    assert operations == names
    for item in OPENAPI["paths"].values():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "421" in op["responses"], op["operationId"]
            assert ("415" in op["responses"]) is (method != "get"), op["operationId"]


async def test_openapi_is_served_without_credentials(stack: Stack) -> None:
    """GET /admin/openapi.json needs no credential."""
    resp = await stack.admin.get("/admin/openapi.json")
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"
