import re

import pytest

from task_manager.api import operations


def test_openapi_document_describes_every_route(app, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served


def test_every_operation_documents_its_error_responses(client):
    doc = client.get("/api/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if operation.get("security"):
                assert "401" in operation["responses"], (path, method)
            if "requestBody" in operation:
                assert "400" in operation["responses"], (path, method)


def test_a_route_without_its_declaration_is_never_served_undocumented(app):
    """The paths come from the routes' own @documented declarations: a route that has none
    for one of its methods makes the document fail, here and in the test above."""
    @operations.documented("get", "Documented", responses={"200": {"description": "ok"}})
    def half_documented():
        return ""

    app.add_url_rule("/api/half/<name>", view_func=half_documented, methods=["GET", "POST"])
    with pytest.raises(LookupError, match=r"/api/half/<name> POST \(half_documented\) has no @documented operation"):
        operations.paths(app.url_map, app.view_functions)
    app.view_functions["half_documented"] = operations.documented(
        "post", "Now it is", responses={"200": {"description": "ok"}})(half_documented)
    item = operations.paths(app.url_map, app.view_functions)["/api/half/{name}"]
    assert set(item) == {"get", "post", "parameters"}
    assert item["parameters"] == [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
