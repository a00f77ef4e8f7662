"""Commands that maintain the checkpoint database: prune, doctor."""

from __future__ import annotations

import typer
from rich.table import Table

from flowstate.errors import CLIError

from ._common import DB_HELP, GRAPH_HELP, VERBOSE_HELP, console, resolve_db


def prune(
    older_than: str = typer.Option(..., "--older-than", help="Age, e.g. 30d, 12h, 90m."),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
    thread: str | None = typer.Option(None, "--thread", help="Only this thread's turns."),
    whole_threads: bool = typer.Option(
        False, "--threads", help="Delete whole threads whose latest turn is older."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Delete old runs with everything that hangs off them (writes, effects, interrupts,
    snapshots, child runs). Running runs are kept unless --status running. A thread keeps
    its latest turn (it goes on from it) unless --threads deletes whole threads."""
    from flowstate.checkpoints import parse_age
    from flowstate.checkpoints import prune as do_prune

    try:
        age = parse_age(older_than)
    except ValueError as e:
        raise CLIError(f"--older-than: {e}") from None
    d = resolve_db(db, graph, verbose=verbose)
    ids = do_prune(
        d.store,
        older_than=age,
        status=status,
        dry_run=dry_run,
        thread_id=thread,
        whole_threads=whole_threads,
    )
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(ids)} run{'s' if len(ids) != 1 else ''}", highlight=False)
    for i in ids[:50]:
        console.print(f"  {i}", highlight=False)


def doctor(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    graph: str | None = typer.Option(None, "--graph", "-g", help=GRAPH_HELP),
    quarantine: list[str] = typer.Option(
        [], "--quarantine", help="Move this run's rows aside (repeatable)."
    ),
    vacuum: bool = typer.Option(False, "--vacuum", help="Compact the database file."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Check the database as the engine reads it: SQLite's integrity check, then every
    row's hash and JSON in every table. Lists damaged runs and rows (exit code 1)."""
    from flowstate.checkpoints import RowScanStore
    from flowstate.checkpoints import doctor as do_doctor

    d = resolve_db(db, graph, verbose=verbose, migrate=False)
    store = d.store
    for run_id in quarantine:
        if not isinstance(store, RowScanStore):
            raise CLIError(f"--quarantine is not supported for {d.where} (SQLite files only)")
        moved = store.quarantine_run(run_id)
        if not moved:
            raise CLIError(f"no rows of run '{run_id}' in {d.where}; `flowstate runs` lists runs")
        what = ", ".join(f"{n} {t}" for t, n in moved.items())
        console.print(
            f"quarantined run {run_id}: moved {what} into quarantine_* tables", highlight=False
        )
    rep = do_doctor(store, vacuum=vacuum)
    color = "green" if rep.integrity == "ok" else "red"
    console.print(
        f"{rep.path}: integrity [{color}]{rep.integrity}[/], {rep.file_bytes:,} bytes",
        highlight=False,
    )
    if rep.damaged:
        runs = rep.damaged_runs
        console.print(
            f"[red]{len(rep.damaged)} damaged row(s)[/] in {len(runs)} run(s): {', '.join(runs)}",
            highlight=False,
        )
        t = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("table", "run", "step", "problem"):
            t.add_column(col, overflow="fold")
        for row in rep.damaged[:50]:
            t.add_row(row.table, row.run_id, "" if row.step is None else str(row.step), row.problem)
        console.print(t)
        first = runs[0]
        console.print(
            f"reading these runs fails with FS301; set one aside with "
            f"`flowstate doctor --db {rep.path} --quarantine {first}`",
            highlight=False,
            markup=False,
        )
    else:
        console.print("rows: every hash and JSON column checks", highlight=False)
    if rep.key_ids:
        kids = ", ".join(f"{k} ({n:,} values)" for k, n in rep.key_ids.items())
        console.print(f"encrypted at rest, key ids in use: {kids}", highlight=False)
    if rep.rows:
        t = Table(title="rows per table", box=None, pad_edge=False, header_style="bold")
        t.add_column("table")
        t.add_column("rows", justify="right")
        for name, n in rep.rows.items():
            t.add_row(name, f"{n:,}")
        console.print(t)
    if rep.largest_runs:
        t = Table(title="largest runs", box=None, pad_edge=False, header_style="bold")
        t.add_column("run")
        t.add_column("bytes", justify="right")
        for rid, n in rep.largest_runs:
            t.add_row(rid, f"{n:,}")
        console.print(t)
    if rep.vacuumed_bytes is not None:
        console.print(
            f"vacuum freed {rep.vacuumed_bytes:,} bytes (now {rep.file_bytes:,})", highlight=False
        )
    elif vacuum:
        console.print("vacuum skipped: fix or quarantine the damage first", highlight=False)
    if not rep.ok:
        raise typer.Exit(code=1)
