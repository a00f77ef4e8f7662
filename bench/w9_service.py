"""W9 task service: tasks per second and latency of create + complete over HTTP.

flowstate alone (no peer has a comparable task service). The server is a real
``flowstate serve bench/w9_graph.py:REGISTRY --db <file>`` (uvicorn, one process, a SQLite
file on the disk, its defaults: ``--max-concurrent-runs 8``, durability ``normal``) started
in a subprocess; the graph is a chain of ``w9_nodes`` (10) async nodes, each
``count += 1``. ``C`` = ``w9_clients`` (50) concurrent clients (asyncio tasks in this
process, each with its own ``httpx.AsyncClient`` and connection) loop until ``w9_tasks``
(500) tasks are done; each task is:

1. ``POST /v1/tasks`` ``{"graph": "chain", "input": {"count": 0}}`` → 202 (admission is
   committed before the answer);
2. ``GET /v1/tasks/{id}/events?mode=updates`` — the server-sent events of the task, read
   until ``run_finished`` (the API's way to wait for a task: there is no long-poll
   parameter; polling ``GET /v1/tasks/{id}`` would add requests and a poll interval). The
   ``run_finished`` event must say ``completed``; then ``GET /v1/tasks/{id}`` checks the
   final state (``count == w9_nodes``), outside the timed latency.

Timed: latency = from sending the POST to reading ``run_finished`` (per task); throughput
= tasks / wall time from the first POST to the last ``run_finished``. Before the timed
part, each client runs one untimed task (warm-up: connections, imports, the first
activations). Reported: tasks per second, p50 and p99 latency (ms), and ``nproc`` (the
server and the clients share the machine's cores).

The server needs the ``service`` extra (fastapi, uvicorn): it runs with this interpreter
when it has them, else ``$FLOWSTATE_BENCH_SERVICE_PYTHON``, else the repository's
``.venv/bin/python``.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import FULL, Sizes, scratch

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
READY_TIMEOUT_S = 60.0


def _server_python() -> str:
    candidates = [
        sys.executable,
        os.environ.get("FLOWSTATE_BENCH_SERVICE_PYTHON", ""),
        str(ROOT / ".venv" / "bin" / "python"),
    ]
    for py in candidates:
        if not py or not pathlib.Path(py).exists():
            continue
        ok = subprocess.run(
            [py, "-c", "import fastapi, uvicorn"], capture_output=True, check=False
        ).returncode
        if ok == 0:
            return py
    raise RuntimeError(
        "W9 needs an interpreter with fastapi and uvicorn (pip install 'flowstate[service]'): "
        "set FLOWSTATE_BENCH_SERVICE_PYTHON"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux ``/proc``)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"flowstate serve exited with {proc.returncode}")
            try:
                if (await c.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"flowstate serve was not ready after {READY_TIMEOUT_S:.0f} s")


async def _task(client: Any, nodes: int) -> float:
    """One task created and awaited; returns its latency in seconds."""
    t0 = time.perf_counter()
    r = await client.post("/v1/tasks", json={"graph": "chain", "input": {"count": 0}})
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    status = None
    async with client.stream("GET", f"/v1/tasks/{task_id}/events", params={"mode": "updates"}) as s:
        kind = None
        async for line in s.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "run_finished":
                status = line
                break
    latency = time.perf_counter() - t0
    assert status is not None and '"completed"' in status, status
    return latency


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    import httpx

    clients, total, nodes = cfg.w9_clients, cfg.w9_tasks, cfg.w9_nodes
    with scratch("w9-fs") as d:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(
            os.environ,
            W9_NODES=str(nodes),
            PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        proc = subprocess.Popen(
            [
                _server_python(),
                *os.environ.get("W9_SERVER_ARGS", "-m flowstate.cli").split(),
                "serve",
                f"{HERE / 'w9_graph.py'}:REGISTRY",
                "--db",
                str(d / "service.db"),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await _wait_ready(base, proc)
            limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
            conns = [
                httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0)
                for _ in range(clients)
            ]
            await asyncio.gather(*(_task(c, nodes) for c in conns))  # warm-up
            latencies: list[float] = []
            left = total

            async def client_loop(c: Any) -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    latencies.append(await _task(c, nodes))

            server_cpu0, client_cpu0 = _cpu_s(proc.pid), time.process_time()
            t0 = time.perf_counter()
            await asyncio.gather(*(client_loop(c) for c in conns))
            wall = time.perf_counter() - t0
            server_cpu = _cpu_s(proc.pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
            check = await conns[0].get("/v1/tasks", params={"limit": 1})
            last = check.json()["items"][0]["id"]
            state = (await conns[0].get(f"/v1/tasks/{last}")).json()["state"]
            assert state == {"count": nodes}, state
            for c in conns:
                await c.aclose()
        finally:
            if os.environ.get("W9_SERVER_ARGS"):  # a profiling wrapper: SIGUSR1 dumps
                proc.send_signal(signal.SIGUSR1)
                time.sleep(2)
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode not in (0, -15) and err:
                print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "tasks_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": p99 * 1000,
        "tasks": len(latencies),
        "server_cpu_ms": server_cpu / len(latencies) * 1000,
        "client_cpu_ms": client_cpu / len(latencies) * 1000,
        "nproc": os.cpu_count() or 0,
    }
