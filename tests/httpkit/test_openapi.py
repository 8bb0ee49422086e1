"""The published contract: /api/openapi.json is a valid OpenAPI 3.1 document generated from the
same operations that answer, so a path, method, auth rule or error status the code has and the
document lacks (or the other way round) fails here; schemathesis then checks every answer
against it (tests/scenarios/fuzz/test_schemathesis.py)."""

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

from config.httpkit.fastlane import registered

pytestmark = pytest.mark.django_db(databases=["default"])


@pytest.fixture
def document():
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def _api_routes() -> set[str]:
    """Every /api/ route Django resolves, as an OpenAPI path: users/<int:user_id> -> /api/users/{user_id}."""
    found = set()

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.add(prefix + str(p.pattern))

    walk(get_resolver().url_patterns, "/")
    api = {r for r in found if r.startswith("/api/") and r not in ("/api/", "/api/openapi.json", "/api/docs")}
    return {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r) for r in api}


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_documented_path_is_served(document):
    assert set(document["paths"]) == _api_routes()


def test_the_fast_lane_serves_only_documented_operations(document):
    for route in registered():
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.route)
        assert route.method.lower() in document["paths"][path], route


def test_every_operation_documents_its_errors_and_its_auth(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "503" in responses, (method, path)  # a database can always be down
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            security = op.get("security", [])
            if {"TokenAuth": []} in security and {} not in security:
                assert "401" in responses, (method, path)
            if method in ("post", "patch"):
                assert {"400", "413"} <= set(responses), (method, path)  # bodies: malformed, too big
                assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_permissions_named_in_summaries_are_enforced_with_403(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if re.search(r"\((market|blog|auth)\.\w+\)", op.get("summary", "")):
                assert "403" in op["responses"], (method, path)


def test_error_codes_are_named_per_status(document):
    transfers = document["paths"]["/api/market/transfers"]["post"]["responses"]
    assert "account_not_found" in transfers["404"]["description"]
    assert "insufficient_funds" in transfers["409"]["description"]
    assert "idempotency_key_reused" in transfers["409"]["description"]


def test_the_token_scheme_and_optional_tokens(document):
    assert document["components"]["securitySchemes"]["TokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
    }
    user = document["paths"]["/api/users/{user_id}"]["get"]
    assert user["security"] == [{"TokenAuth": []}, {}]  # anonymous callers are served too


def test_create_operations_link_to_their_reads(document):
    links = document["paths"]["/api/market/orders"]["post"]["responses"]["201"]["links"]
    assert links["order_detail"] == {
        "operationId": "order_detail",
        "parameters": {"order_id": "$response.body#/data/id"},
    }
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    for item in document["paths"].values():
        for op in item.values():
            for answer in op["responses"].values():
                for link in answer.get("links", {}).values():
                    assert link["operationId"] in operation_ids
