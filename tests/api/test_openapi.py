"""`/openapi.json`: OpenAPI 3.1, generated from the models the routes validate with, covering every route."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from athena.api.ha import ConversationIn
from athena.api.openai import ChatIn
from athena.api.openapi import document
from tests.api.conftest import LiveGateway


async def test_the_document_is_served_behind_the_token(gateway: LiveGateway) -> None:
    resp = await gateway.client.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    served = resp.json()
    assert served == document()
    assert served["openapi"] == "3.1.0" and served["info"]["version"] == "0.1.0"
    assert served["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.get("/openapi.json")).status_code == 401


async def test_every_route_and_method_is_documented(gateway: LiveGateway) -> None:
    paths = document()["paths"]
    routes = gateway_routes(gateway)
    assert len(routes) == len(paths)
    for route in routes:
        path = re.sub(
            r"\{(\w+):\w+\}", r"{\1}", route.path
        )  # Starlette's {device:path} is OpenAPI's {device}
        assert path in paths, path
        methods = {m.lower() for m in (route.methods or ())} - {"head"}
        assert methods == set(paths[path]), path


def gateway_routes(gateway: LiveGateway) -> list[Route]:
    """The routes of the app the gateway runs."""
    from athena.api import create_app

    app = create_app(gateway.settings)
    return [r for r in app.routes if isinstance(r, Route)]


def test_request_bodies_are_the_route_models() -> None:
    """Not hand-maintained: the request schemas are pydantic's schema of the very models the routes use."""
    schemas = document()["components"]["schemas"]
    for model in (ConversationIn, ChatIn):
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        generated.pop("$defs", None)
        assert schemas[model.__name__] == generated
    body = document()["paths"]["/ha/conversation"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ConversationIn"}


def test_only_health_is_open() -> None:
    for path, methods in document()["paths"].items():
        for op in methods.values():
            assert (op.get("security") == []) == path.startswith("/health"), path
            if not path.startswith("/health"):
                assert "401" in op["responses"], path
