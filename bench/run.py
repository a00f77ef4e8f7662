"""flowstate against LangGraph and Burr on the same work (issue 9).

    python bench/run.py [--quick] [--reps N] [--out bench/out] [--only W1,W3] [--plain]

Creates ``bench/.peers`` (a separate virtualenv with langgraph, langgraph-checkpoint-sqlite,
apache-burr, langchain, dbos and flowstate installed editable from this repository) if it is
missing, then re-executes itself inside it. Every workload (``bench/w*_*.py``, one async
function per engine) runs on each engine in this one process, the engines alternating, for several
repetitions; the table shows medians, the ratio peer/flowstate and PASS/MISS per target.
Writes ``<out>/results.json`` and (full runs only) ``bench/RESULTS.md``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib
import json
import logging
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".peers"
PEER_PYTHON = PEERS / "bin" / "python"
REQUIREMENTS = ["langgraph", "langgraph-checkpoint-sqlite", "apache-burr", "langchain", "dbos"]
"""Installed into the peers venv, next to ``pip install -e <repo root>[EXTRAS]``."""
EXTRAS = "[postgres,service]"
"""flowstate's extras the workloads use: the Postgres rows (W1, W4) and the server of W9."""
READY = PEERS / ".bench-ready"
CMD_ENV = "FLOWSTATE_BENCH_CMD"


# -- bootstrap: the peers virtualenv ------------------------------------------------------------


def _in_peers_venv() -> bool:
    return pathlib.Path(sys.prefix).resolve() == PEERS.resolve()


def _ensure_peers() -> None:
    """Create/complete ``bench/.peers`` and re-execute this script with its interpreter."""
    wanted = "\n".join([*REQUIREMENTS, f"-e {os.path.relpath(ROOT, HERE)}{EXTRAS}"])
    if not (PEER_PYTHON.exists() and READY.exists() and READY.read_text() == wanted):
        print(f"[bench] preparing {PEERS} ...", file=sys.stderr, flush=True)
        if not PEER_PYTHON.exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        pip = [str(PEER_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        # the repository root, relative to this script (bench/..)
        subprocess.run(
            [*pip, *REQUIREMENTS, "-e", str(HERE / os.path.relpath(ROOT, HERE)) + EXTRAS],
            check=True,
        )
        READY.write_text(wanted)
    env = dict(os.environ)
    env.setdefault(CMD_ENV, shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))
    os.execve(
        str(PEER_PYTHON),
        [str(PEER_PYTHON), str(pathlib.Path(__file__).resolve()), *sys.argv[1:]],
        env,
    )


# -- what is measured and how it is judged --------------------------------------------------------


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    key: str
    unit: str
    agg: str = "median"  # median | max | sum over repetitions
    ratio: bool = True
    fs_only: bool = False


ROWS: list[Row] = [
    Row("W1 chain (a) no persistence", "per-node overhead", "a_us_per_node", "µs"),
    Row("W1 chain (b) SQLite", "per-node overhead", "b_us_per_node", "µs"),
    Row(
        "W1 chain (b) SQLite",
        "flowstate durability='full'",
        "b_full_us_per_node",
        "µs",
        fs_only=True,
    ),
    Row(
        "W1 chain (b) SQLite",
        "floor: a 1-row INSERT commit, synchronous=FULL",
        "full_floor_us",
        "µs",
        fs_only=True,
    ),
    Row("W1 chain (b) Postgres", "per-node overhead", "pg_us_per_node", "µs"),
    Row("W1 chain (b) Postgres", "floor: a 1-row INSERT commit", "pg_floor_us", "µs", fs_only=True),
    Row("W2 state growth", "run time", "time_ms", "ms"),
    Row("W2 state growth", "db+wal+shm, connection open", "db_bytes_open", "B"),
    Row("W2 state growth", "db+wal, connection open", "db_wal_bytes_open", "B"),
    Row("W2 state growth", "db bytes after close", "db_bytes_closed", "B"),
    Row(
        "W2 state growth",
        "marginal growth / appended (2nd half of the steps)",
        "marginal_over_appended",
        "×",
        fs_only=True,
    ),
    Row("W3 fan-out (a) no persistence", "wall time", "a_ms", "ms"),
    Row("W3 fan-out (b) SQLite", "wall time", "b_ms", "ms"),
    Row("W4 resume", "resume time", "resume_ms", "ms"),
    Row("W4 resume", "committed nodes re-executed", "reexecuted", "", agg="max", ratio=False),
    Row("W4 resume Postgres", "resume time", "pg_resume_ms", "ms"),
    Row("W4 resume Postgres", "committed nodes re-executed", "pg_reexecuted", "", "max", False),
    Row("W5 history", "list history", "history_ms", "ms"),
    Row("W5 history", "state at step K", "state_at_ms", "ms"),
    Row("W5 history", "history entries", "entries", "", agg="max", ratio=False),
    Row("W6 long run", "steps run", "steps", "", agg="max", ratio=False),
    Row("W6 long run", "per step, first window", "first_us", "µs"),
    Row("W6 long run", "per step, last window", "last_us", "µs"),
    Row("W6 long run", "last / first", "last_over_first", "×"),
    Row("W6 long run", "median per step, first window", "first_med_us", "µs"),
    Row("W6 long run", "median per step, last window", "last_med_us", "µs"),
    Row("W6 long run", "median last / median first", "med_last_over_first", "×"),
    Row("W6 long run", "total time", "total_s", "s"),
    Row("W6 long run", "peak memory (tracemalloc)", "peak_mb", "MiB"),
    Row("W7 many runs (a) 1 process", "runs per second", "a_runs_per_s", "runs/s"),
    Row("W7 many runs (a) 1 process", "errors (locking)", "a_errors", "", agg="sum", ratio=False),
    Row("W7 many runs (b) processes", "runs per second", "b_runs_per_s", "runs/s"),
    Row("W7 many runs (b) processes", "errors (locking)", "b_errors", "", agg="sum", ratio=False),
    Row("W8 agent loop", "per-turn overhead", "us_per_turn", "µs"),
    Row("W8 agent loop", "model calls", "model_calls", "", agg="max", ratio=False),
    Row("W8 agent loop", "tool calls", "tool_calls", "", agg="max", ratio=False),
    Row("W8 agent loop", "checkpoints", "checkpoints", "", agg="max", ratio=False),
    Row("W9 task service", "tasks per second", "tasks_per_s", "tasks/s", fs_only=True),
    Row("W9 task service", "p50 latency", "p50_ms", "ms", fs_only=True),
    Row("W9 task service", "p99 latency", "p99_ms", "ms", fs_only=True),
    Row("W9 task service", "server CPU per task", "server_cpu_ms", "ms", fs_only=True),
    Row("W9 task service", "client CPU per task", "client_cpu_ms", "ms", fs_only=True),
    Row("W9 task service", "nproc", "nproc", "", agg="max", fs_only=True),
    Row("W10 memory per run", "peak RSS per in-flight run", "rss_per_run_b", "B"),
    Row("W10 memory per run", "peak RSS", "rss_peak_mib", "MiB"),
    Row("W10 memory per run", "RSS before the runs", "rss_base_mib", "MiB"),
    Row("W10 memory per run", "wall time of the runs", "wall_s", "s"),
    Row("W10 memory per run", "runs in flight at once", "in_flight", "", agg="max", ratio=False),
]

WORKLOADS = {
    "W1": "w1_chain",
    "W2": "w2_growth",
    "W3": "w3_fanout",
    "W4": "w4_resume",
    "W5": "w5_history",
    "W6": "w6_long",
    "W7": "w7_many",
    "W8": "w8_agent",
    "W9": "w9_service",
    "W10": "w10_memory",
}

Medians = dict[str, dict[str, Any]]  # engine -> key -> aggregated value


@dataclass
class Verdict:
    workload: str
    key: str
    text: str
    ok: bool | None  # None: not measured


def _val(m: Medians, engine: str, key: str) -> float | None:
    v = m.get(engine, {}).get(key)
    return None if v is None else float(v)


def judge(med: dict[str, Medians], cfg: Any) -> list[Verdict]:
    """The issue's targets, on the aggregated numbers."""
    out: list[Verdict] = []
    peers = ("langgraph", "burr")

    def add(w: str, key: str, text: str, ok: bool | None) -> None:
        out.append(Verdict(w, key, text, ok))

    if "W1" in med:
        m = med["W1"]
        fs = _val(m, "flowstate", "a_us_per_node")
        others = [v for p in peers if (v := _val(m, p, "a_us_per_node")) is not None]
        burr = _val(m, "burr", "a_us_per_node")
        add(
            "W1",
            "a_us_per_node",
            "≤ 20 µs; ≥2.5× lower than Burr, below every peer",
            None
            if fs is None or not others or burr is None
            else fs <= 20 and burr >= 2.5 * fs and fs < min(others),
        )
        fs = _val(m, "flowstate", "b_us_per_node")
        others = [v for p in peers if (v := _val(m, p, "b_us_per_node")) is not None]
        add(
            "W1",
            "b_us_per_node",
            "≥10× lower than every peer",
            None if fs is None or not others else min(others) >= 10 * fs,
        )
        fs = _val(m, "flowstate", "b_full_us_per_node")
        add(
            "W1",
            "b_full_us_per_node",
            "≥5× lower than every peer (both fsync)",
            None if fs is None or not others else min(others) >= 5 * fs,
        )
        for key, k in (("b_us_per_node", 25), ("pg_us_per_node", 8)):  # vs DBOS, same backend
            fs, db = _val(m, "flowstate", key), _val(m, "dbos", key)
            ok = None if fs is None or db is None else db >= k * fs
            add("W1", key, f"≥{k}× lower than DBOS", ok)
    if "W2" in med:
        fs = _val(med["W2"], "flowstate", "db_wal_bytes_open")
        limit = 1.5 * cfg.w2_steps * cfg.w2_chars
        add(
            "W2",
            "db_wal_bytes_open",
            f"≤ 1.5 × appended ({limit / 1000:.0f} kB)",
            None if fs is None else fs <= limit,
        )
        fs = _val(med["W2"], "flowstate", "marginal_over_appended")
        add("W2", "marginal_over_appended", "≤ 1.2×", None if fs is None else fs <= 1.2)
    if "W3" in med:
        fs = _val(med["W3"], "flowstate", "a_ms")
        ideal = cfg.w3_sleep * 1000
        add(
            "W3",
            "a_ms",
            f"≤ 3 × ideal ({3 * ideal:.0f} ms)",
            None if fs is None else fs <= 3 * ideal,
        )
    if "W4" in med:
        fs = _val(med["W4"], "flowstate", "reexecuted")
        add("W4", "reexecuted", "0", None if fs is None else fs == 0)
        fs = _val(med["W4"], "flowstate", "pg_reexecuted")
        add("W4", "pg_reexecuted", "0", None if fs is None else fs == 0)
    if "W5" in med:
        m = med["W5"]
        fs, burr = _val(m, "flowstate", "state_at_ms"), _val(m, "burr", "state_at_ms")
        add(
            "W5",
            "state_at_ms",
            "≤ Burr's",
            None if fs is None or burr is None else fs <= burr,
        )
        fs = _val(m, "flowstate", "history_ms")
        others = [v for p in peers if (v := _val(m, p, "history_ms")) is not None]
        add(
            "W5",
            "history_ms",
            "≥10× faster than every peer",
            None if fs is None or not others else min(others) >= 10 * fs,
        )
    if "W6" in med:
        fs = _val(med["W6"], "flowstate", "last_over_first")
        add("W6", "last_over_first", "≤ 1.5×", None if fs is None else fs <= 1.5)
    if "W8" in med:
        fs = _val(med["W8"], "flowstate", "us_per_turn")
        lg = _val(med["W8"], "langgraph", "us_per_turn")
        add(
            "W8",
            "us_per_turn",
            "≥5× lower than LangGraph",
            None if fs is None or lg is None else lg >= 5 * fs,
        )
    if "W7" in med:
        for key in ("a_runs_per_s", "b_runs_per_s"):
            fs = _val(med["W7"], "flowstate", key)
            others = [v for p in peers if (v := _val(med["W7"], p, key)) is not None]
            add(
                "W7",
                key,
                "≥2× the best peer",
                None if fs is None or not others else fs >= 2 * max(others),
            )
        for key in ("a_errors", "b_errors"):
            lock = _val(med["W7"], "flowstate", key.replace("errors", "lock_errors"))
            add("W7", key, "no locking errors", None if lock is None else lock == 0)
    return out


# -- running ----------------------------------------------------------------------------------


def _rotate(engines: list[str], rep: int) -> list[str]:
    k = rep % len(engines)
    return engines[k:] + engines[:k]


def _call(mod: Any, engine: str, cfg: Any, **kw: Any) -> dict[str, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = asyncio.run(getattr(mod, engine)(cfg, **kw))
    out["_wall_s"] = time.perf_counter() - t0
    return out


def _aggregate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    agg: dict[str, Any] = {}
    keys = {k for s in samples for k in s}
    for k in sorted(keys):
        vals = [s[k] for s in samples if k in s]
        row = next((r for r in ROWS if r.key == k), None)
        if vals and all(isinstance(v, bool) for v in vals):
            agg[k] = any(vals)
        elif vals and all(isinstance(v, int | float) for v in vals):
            how = row.agg if row else "median"
            if k.endswith("lock_errors") or k.endswith("_errors"):
                how = "sum"
            agg[k] = {"median": statistics.median, "max": max, "sum": sum}[how](vals)
        else:
            agg[k] = vals[0] if vals else None
    return agg


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_workload(name: str, engines: list[str], cfg: Any, reps: int) -> dict[str, Any]:
    mod = importlib.import_module(WORKLOADS[name])
    engines = [e for e in engines if hasattr(mod, e)]  # DBOS only runs W1 and W4
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    engines = [e for e in engines if hasattr(mod, e)]  # W8 has no Burr, W9 no peer
    samples: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    notes: dict[str, str] = {}
    extra: dict[str, dict[str, Any]] = {}
    if name == "W6":
        reps = min(reps, 3)
        steps = dict.fromkeys(engines, cfg.w6_steps)
    for rep in range(reps):
        for e in _rotate(engines, rep):
            kw = {"steps": steps[e]} if name == "W6" else {}
            r = _call(mod, e, cfg, **kw)
            if name == "W6" and rep == 0 and (r["truncated"] or r["total_s"] > cfg.w6_budget_s):
                fit = int(r["steps"] * min(1.0, cfg.w6_budget_s / r["total_s"]))
                fit = max(2 * cfg.w6_window, fit // cfg.w6_window * cfg.w6_window)
                notes[e] = (
                    f"{cfg.w6_steps:,} steps did not fit in {cfg.w6_budget_s:.0f} s "
                    f"({r['steps']:,} steps took {r['total_s']:.0f} s); measured with "
                    f"{fit:,} steps"
                )
                steps[e] = fit
                _log(f"[bench] {name} {e}: {notes[e]}")
                r = _call(mod, e, cfg, steps=fit)
            samples[e].append(r)
            _log(
                f"[bench] {name} rep {rep + 1}/{reps} {e}: "
                + ", ".join(f"{k}={_short(v)}" for k, v in r.items())
            )
    if name == "W6":
        for e in engines:
            r = _call(mod, e, cfg, steps=steps[e], memory=True)
            extra[e] = {"peak_mb": r["peak_mb"], "memory_run_steps": r["steps"]}
            _log(f"[bench] {name} memory run {e}: peak {r['peak_mb']:.1f} MiB, {r['steps']} steps")
    med = {e: _aggregate(samples[e]) | extra.get(e, {}) for e in engines}
    load = [round(x, 2) for x in os.getloadavg()]
    return {
        "samples": samples,
        "aggregate": med,
        "notes": notes,
        "load_after": load,
        "load_before": load_before,
        "seconds": time.perf_counter() - started,
    }


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)[:60]


# -- presentation ---------------------------------------------------------------------------


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "B":
        return f"{v / 1000:,.0f} kB"
    if unit in ("", "runs/s", "tasks/s") and float(v).is_integer():
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f} {unit}".strip()
    if abs(v) >= 10:
        return f"{v:.1f} {unit}".strip()
    return f"{v:.2f} {unit}".strip()


def table_rows(results: dict[str, Any], verdicts: list[Verdict]) -> list[list[str]]:
    rows = []
    for r in ROWS:
        w = r.workload.split()[0]
        if w not in results:
            continue
        med: Medians = results[w]["aggregate"]
        if not any(r.key in med.get(e, {}) for e in med):
            continue
        cells = [r.workload, r.metric]
        fs = _val(med, "flowstate", r.key)
        cells.append(_fmt(med.get("flowstate", {}).get(r.key), r.unit))
        for p in PEERS_SHOWN:
            pv = None if r.fs_only else med.get(p, {}).get(r.key)
            text = _fmt(pv, r.unit)
            if r.key.endswith("_errors") and pv is not None:
                text += f" ({int(med[p].get(r.key.replace('errors', 'lock_errors'), 0))})"
            if w == "W6" and r.key == "steps" and results[w]["notes"].get(p):
                text += " (reduced)"
            if r.key == "peak_mb" and pv is not None:
                text += f" ({med[p].get('memory_run_steps', 0):,} steps)"
            cells.append(text)
            ok = r.ratio and pv is not None and fs not in (None, 0)
            if r.key == "peak_mb" and ok:  # only comparable at the same number of steps
                ok = med[p].get("memory_run_steps") == med["flowstate"].get("memory_run_steps")
            cells.append(f"{float(pv) / fs:.2f}×" if ok else "")  # type: ignore[operator]
        if r.key == "peak_mb" and fs is not None:
            cells[2] += f" ({med['flowstate'].get('memory_run_steps', 0):,} steps)"
        if r.key.endswith("_errors") and fs is not None:
            lock = int(med["flowstate"].get(r.key.replace("errors", "lock_errors"), 0))
            cells[2] += f" ({lock})"
        vs = [v for v in verdicts if v.workload == w and v.key == r.key]
        cells.append("; ".join(v.text for v in vs))
        cells.append("/".join("—" if v.ok is None else "PASS" if v.ok else "MISS" for v in vs))
        rows.append(cells)
    return rows


PEERS_SHOWN = ("langgraph", "burr", "dbos")
HEADERS = [
    "workload",
    "metric",
    "flowstate",
    "LangGraph",
    "LG/fs",
    "Burr",
    "Burr/fs",
    "DBOS",
    "DBOS/fs",
    "target",
    "result",
]


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(rows: list[list[str]], plain: bool) -> None:
    if plain:
        print(markdown_table(rows))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="flowstate vs LangGraph, Burr, DBOS (medians; ratio = peer / flowstate)")
    for h in HEADERS:
        t.add_column(h, justify="left" if h in ("workload", "metric", "target") else "right")
    for row in rows:
        style = "bold red" if "MISS" in row[-1] else "green" if "PASS" in row[-1] else None
        t.add_row(*row[:-1], f"[{style}]{row[-1]}[/]" if style else row[-1])
    Console(width=200).print(t)


def source_fingerprint() -> str:
    """What flowstate code was measured: a hash of its sources and their newest mtime."""
    import hashlib

    src = sorted((ROOT / "flowstate").rglob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in src)).hexdigest()[:12]
    newest = max(p.stat().st_mtime for p in src)
    when = dt.datetime.fromtimestamp(newest, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"sha256 {digest} over {len(src)} files, newest modified {when}"


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import sqlite3

    return {
        "flowstate_source": source_fingerprint(),
        "uname": subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            p: v(p)
            for p in (
                "flowstate",
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-sqlite",
                "apache-burr",
                "aiosqlite",
                "dbos",
                "psycopg",
                "pydantic",
                "pydantic-core",
            )
        },
    }


def write_results_md(
    path: pathlib.Path,
    meta: dict[str, Any],
    rows: list[list[str]],
    results: dict[str, Any],
    verdicts: list[Verdict],
) -> None:
    m = meta["machine"]
    notes = [f"- W6 {e}: {n}." for w in results.values() for e, n in w["notes"].items()]
    load = "; ".join(
        f"{w} {r['load_before'][0]} → {r['load_after'][0]}" for w, r in results.items()
    )
    changed = (
        " — **flowstate changed during the run**"
        if meta["source_start"] != m["flowstate_source"]
        else " (unchanged)"
    )
    sizes = "--quick sizes" if meta["quick"] else "full sizes"
    passed = [f"{v.workload} ({v.key})" for v in verdicts if v.ok]
    missed = [f"{v.workload} ({v.key})" for v in verdicts if v.ok is False]
    text = f"""# Benchmark results: flowstate vs LangGraph, Burr and DBOS

Written by `bench/run.py` — see `bench/README.md` for what each workload does, how it is
measured, and the Findings for the targets flowstate misses.

- date: {meta["date"]}
- command: `{meta["command"]}`
- runs: {meta["reps"]} repetitions per workload (W6 at most 3), engines alternating,
  {sizes}; the suite took {meta["suite_s"] / 60:.1f} min
- machine: `{m["uname"]}`
- nproc: {m["nproc"]}
- python: {m["python"]}, SQLite {m["sqlite"]}
- packages: {", ".join(f"{k} {v}" for k, v in m["packages"].items())}
- flowstate source (the working tree; `sha256` of `flowstate/**/*.py`): at the start
  {meta["source_start"]}; at the end {m["flowstate_source"]}{changed}. The
  in-process workloads run the code imported when the run started; only W7(b)'s child
  processes import it again when they start.
- load average (1 min) before → after each workload (a shared 2-core machine; other
  sessions' test suites were running): {load}

Medians over the repetitions (counts: the maximum; errors: the sum); the ratio is
peer / flowstate (above 1: flowstate is faster or smaller, except runs per second, where
above 1 means the peer is faster). Error cells show `errors (of which locking)`.

{markdown_table(rows)}

Targets met: {", ".join(passed) or "none"}.
Targets missed: {", ".join(missed) or "none"}.

{chr(10).join(notes) if notes else "All engines ran the full W6 size."}
"""
    path.write_text(text)


# -- main -----------------------------------------------------------------------------------------


def render(path: pathlib.Path, plain: bool) -> None:
    """Re-render a finished run (same numbers; the current table layout and text)."""
    sys.path.insert(0, str(HERE))
    from _common import FULL, QUICK

    doc = json.loads(path.read_text())
    meta, results = doc["meta"], doc["workloads"]
    cfg = QUICK if meta["quick"] else FULL
    verdicts = judge({w: r["aggregate"] for w, r in results.items()}, cfg)
    rows = table_rows(results, verdicts)
    print_table(rows, plain)
    full = not meta["quick"] and set(results) == set(WORKLOADS)
    target = HERE / "RESULTS.md" if full else path.parent / "RESULTS.md"
    write_results_md(target, meta, rows, results, verdicts)
    print(f"wrote {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a < 60 s smoke test")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 1)")
    ap.add_argument("--out", default=str(HERE / "out"), help="folder for results.json")
    ap.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    ap.add_argument("--engines", default="flowstate,langgraph,burr,dbos")
    ap.add_argument("--plain", action="store_true", help="a plain markdown table, no rich")
    ap.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="measure nothing: print the table and rewrite RESULTS.md from a results.json",
    )
    args = ap.parse_args()
    if args.render:
        render(pathlib.Path(args.render), args.plain)
        return
    if not _in_peers_venv():
        _ensure_peers()  # does not return
    sys.path.insert(0, str(HERE))
    from _common import FULL, QUICK

    logging.getLogger("burr").setLevel(logging.CRITICAL)  # its failure banner in W4
    cfg = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 5)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    source_start = source_fingerprint()
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for w in chosen:
        _log(f"[bench] {w} ({WORKLOADS[w]}) ...")
        results[w] = run_workload(w, engines, cfg, reps)
    suite_s = time.perf_counter() - t0
    verdicts = judge({w: r["aggregate"] for w, r in results.items()}, cfg)
    rows = table_rows(results, verdicts)
    print_table(rows, args.plain)
    for w in results.values():
        for e, n in w["notes"].items():
            print(f"note: W6 {e}: {n}")
    print(f"suite: {suite_s:.1f} s")
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get(CMD_ENV, shlex.join(sys.orig_argv)),
        "quick": args.quick,
        "reps": reps,
        "suite_s": suite_s,
        "sizes": asdict(cfg),
        "source_start": source_start,
        "machine": machine(),
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": meta,
        "targets": [asdict(v) for v in verdicts],
        "table": {"headers": HEADERS, "rows": rows},
        "workloads": results,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    print(f"wrote {out / 'results.json'}")
    if not args.quick and not args.only and args.engines == ap.get_default("engines"):
        write_results_md(HERE / "RESULTS.md", meta, rows, results, verdicts)
        print(f"wrote {HERE / 'RESULTS.md'}")
    else:
        write_results_md(out / "RESULTS.md", meta, rows, results, verdicts)
        print(f"wrote {out / 'RESULTS.md'} (partial/quick runs leave bench/RESULTS.md alone)")


if __name__ == "__main__":
    main()
