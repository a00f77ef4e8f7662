"""Commands that maintain the checkpoint database: prune, doctor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from flowstate.checkpoints import SQLiteStore

from ._common import DB_HELP, CLIError, _db, _guard, _store, console


def prune(
    older_than: str = typer.Option(..., "--older-than", help="Age, e.g. 30d, 12h, 90m."),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
) -> None:
    """Delete old runs with everything that hangs off them (writes, effects, interrupts,
    snapshots, child runs). Running runs are kept unless --status running."""
    from flowstate.checkpoints import parse_age
    from flowstate.checkpoints import prune as do_prune

    def go() -> None:
        store = _store(db)
        ids = do_prune(store, older_than=parse_age(older_than), status=status, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        console.print(f"{verb} {len(ids)} run{'s' if len(ids) != 1 else ''}", highlight=False)
        for i in ids[:50]:
            console.print(f"  {i}", highlight=False)

    _guard(go)


def doctor(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    vacuum: bool = typer.Option(False, "--vacuum", help="Compact the database file."),
) -> None:
    """Check the database: SQLite's integrity check, rows per table, largest runs."""
    from flowstate.checkpoints import doctor as do_doctor

    def go() -> None:
        path = _db(db)
        if not Path(path).exists():
            raise CLIError(f"no checkpoint database at {path}")
        store = SQLiteStore(path, migrate=False)
        rep = do_doctor(store, vacuum=vacuum)
        color = "green" if rep.ok else "red"
        console.print(
            f"{rep.path}: integrity [{color}]{rep.integrity}[/], {rep.file_bytes:,} bytes",
            highlight=False,
        )
        if rep.rows:
            t = Table(title="rows per table")
            t.add_column("table")
            t.add_column("rows", justify="right")
            for name, n in rep.rows.items():
                t.add_row(name, f"{n:,}")
            console.print(t)
        if rep.largest_runs:
            t = Table(title="largest runs")
            t.add_column("run")
            t.add_column("bytes", justify="right")
            for rid, n in rep.largest_runs:
                t.add_row(rid, f"{n:,}")
            console.print(t)
        if rep.vacuumed_bytes is not None:
            console.print(f"vacuumed: {rep.vacuumed_bytes:,} bytes", highlight=False)
        if not rep.ok:
            raise typer.Exit(code=1)

    _guard(go)
