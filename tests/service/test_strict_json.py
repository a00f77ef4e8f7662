"""Non-standard JSON is refused with a 422 naming the field (issue 16 item 10).

Python's and pydantic's parsers accept ``NaN``, ``Infinity``, ``1e999`` (read as
infinity) and duplicate keys (last wins); checkpoints are standard JSON, so the service
refuses them before any work, naming the field path.
"""

from __future__ import annotations

import pytest

BAD = [
    ('{"graph": "steps", "input": {"label": "a", "delay": NaN}}', "body.input.delay", "NaN"),
    (
        '{"graph": "steps", "input": {"label": "a", "delay": Infinity}}',
        "body.input.delay",
        "Infinity",
    ),
    (
        '{"graph": "steps", "input": {"label": "a", "delay": -Infinity}}',
        "body.input.delay",
        "Infinity",
    ),
    ('{"graph": "steps", "input": {"label": "a", "delay": 1e999}}', "body.input.delay", "1e999"),
    (
        '{"graph": "steps", "input": {"label": "a", "label": "b"}}',
        "body.input.label",
        "more than once",
    ),
    ('{"graph": "steps", "graph": "steps", "input": {}}', "body.graph", "more than once"),
    (
        '{"graph": "steps", "input": {"label": "a", "items": [1, {"x": NaN}]}}',
        "body.input.items.1.x",
        "NaN",
    ),
]


@pytest.mark.parametrize(("body", "field", "word"), BAD)
def test_non_standard_json_is_a_422_naming_the_field(
    serve, body: str, field: str, word: str
) -> None:
    s = serve()
    r = s.client().post("/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert field in problem["detail"] and word in problem["detail"], problem
    assert problem["errors"][0]["loc"] == field.split(".")
    assert s.service.store.list_runs() == []


def test_standard_json_with_large_finite_numbers_is_accepted(serve) -> None:
    s = serve()
    r = s.client().post(
        "/v1/tasks",
        content='{"graph": "steps", "input": {"label": "1e308", "delay": 1e-300}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 202, r.text
