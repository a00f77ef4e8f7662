"""Property run of the OpenAPI document with schemathesis (RELIABILITY.md R10): every
operation, all checks (5xx, schema conformance of status, content type, headers and body,
negative data rejected, positive data accepted, auth not ignored, 405 with Allow …);
bounded at MAX_EXAMPLES generated cases per operation and phase."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from flowstate.service import GraphRegistry, create_app  # noqa: E402

from .conftest import ThreadServer  # noqa: E402
from .graphs import approval_graph, echo_graph, flaky_graph  # noqa: E402

TOKEN = "fuzz-token"

# Bodies whose validity depends on something no JSON Schema in the document can state, so a
# schema-valid body may get the documented 422 and the positive-data check would be wrong
# there; every other check still applies to these operations:
# - POST /v1/schedules: a cron expression and a time zone are checked by cronsim and
#   zoneinfo ("0 0 30 2 *" is well-formed and never fires);
# - POST /v1/tasks/{id}/edit and /resume: `values`/`update` are checked against the state
#   model of the task's own graph, which the task id picks at request time (a key that is a
#   field of one registered graph is not one of another's).
SEMANTIC_BODY = re.compile(r"^POST /v1/(schedules|tasks/\{task_id\}/(edit|resume))$")
SEMANTIC_BODIES_TOML = """
[[operations]]
include-method = "POST"
include-path-regex = "^/v1/(schedules|tasks/\\\\{task_id\\\\}/(edit|resume))$"
checks.positive_data_acceptance.enabled = false
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 30

# The schema is loaded from the app itself at collection time, and the same app is served
# by a real uvicorn on 127.0.0.1 for the run. Quick graphs only: a fuzzer following the
# create → events link must not wait on long tasks.
_DIR = tempfile.mkdtemp(prefix="flowstate-fuzz-")
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_DB = Path(_DIR) / "runs.db"
APP = create_app(
    GraphRegistry([echo_graph(), approval_graph(), flaky_graph()]),
    db=str(_DB),
    token=TOKEN,
    max_concurrent_runs=4,
    task_timeout=10,
)
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.config.update(headers=AUTH, request_timeout=10)
schema.config.generation.update(max_examples=MAX_EXAMPLES)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with ThreadServer(APP) as server:
        yield server.url


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_openapi_document(case, base_url: str) -> None:  # type: ignore[no-untyped-def]
    excluded = []
    if SEMANTIC_BODY.match(f"{case.method.upper()} {case.path}"):
        from schemathesis.specs.openapi.checks import positive_data_acceptance

        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=base_url, excluded_checks=excluded)


@pytest.mark.slow
def test_schemathesis_cli_all_phases_all_checks(tmp_path: Path) -> None:
    """R10's full size: the CLI against uvicorn, every check (the default; positive data
    off only where SEMANTIC_BODY says why), examples + coverage + fuzzing + stateful
    (following the create → get/cancel/resume/events links), 100 examples."""
    import subprocess
    import sys

    app = create_app(
        GraphRegistry([echo_graph(), approval_graph(), flaky_graph()]),
        db=str(tmp_path / "runs.db"),
        token=TOKEN,
        max_concurrent_runs=4,
        task_timeout=10,
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(SEMANTIC_BODIES_TOML)
    with ThreadServer(app) as server:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{server.url}/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "100",
                "-H",
                f"Authorization: Bearer {TOKEN}",
            ],
            capture_output=True,
            text=True,
            timeout=420,
        )
    assert out.returncode == 0, out.stdout[-4000:]
    # every operation tested, none failed (warnings such as "404 for an unknown schedule
    # name" are not failures)
    operations = sum(
        method in {"get", "post", "put", "patch", "delete"}
        for item in app.openapi()["paths"].values()
        for method in item
    )
    assert f"Tested: {operations}" in out.stdout, out.stdout[-4000:]
    assert "Failures:" not in out.stdout, out.stdout[-4000:]
