"""``POST /v1/tasks/{id}/resume {"rerun_step": true}`` and ``flowstate resume
--rerun-step`` (issue 16 item 5): a task whose step could not close stays failed with the
way out in its error, and a resume with rerun_step runs the step again after the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowstate import StepCloseFailed
from flowstate.cli import app as cli
from tests.lifecycle.close_graphs import make

from .conftest import wait_for


def test_the_service_resumes_a_failed_step_close_with_rerun_step(serve, tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("conflict")
    srv = serve(graphs={"close_fail": make(tmp_path)})
    c = srv.client()
    tid = c.post("/v1/tasks", json={"graph": "close_fail", "input": {"items": [1, 2]}}).json()
    body = wait_for(c, tid["id"], ("failed",))
    assert "could not close" in body["error"] and "rerun_step=True" in body["error"]
    r = c.post(f"/v1/tasks/{tid['id']}/resume", json={})  # the plain way out cannot help
    assert r.status_code == 202
    assert wait_for(c, tid["id"], ("failed",))["status"] == "failed"
    (tmp_path / "node_fixed").touch()
    r = c.post(f"/v1/tasks/{tid['id']}/resume", json={"rerun_step": True})
    assert r.status_code == 202, r.text
    done = wait_for(c, tid["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["state"]["parts"] == [100, 200], done


def test_the_cli_resumes_with_rerun_step(tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("conflict")
    db = str(tmp_path / "runs.db")
    app = make(tmp_path).compile(store=db)
    with pytest.raises(StepCloseFailed):
        app.run_sync({"items": [1, 2]}, run_id="r")
    (tmp_path / "graph.py").write_text(
        "import sys\nfrom pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.lifecycle.close_graphs import make\n"
        f"app = make(Path({str(tmp_path)!r})).compile(store={db!r})\n"
    )
    (tmp_path / "node_fixed").touch()
    res = CliRunner().invoke(
        cli, ["resume", "r", "--graph", f"{tmp_path / 'graph.py'}:app", "--rerun-step", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert app.get_run("r").status == "completed"
    assert [a.attempt for a in app.store.attempts("r")] == [-1, -1]
