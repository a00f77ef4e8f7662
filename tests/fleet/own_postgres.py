"""A throwaway PostgreSQL cluster of a test's own (``initdb`` into a temporary directory,
``pg_ctl`` on a free port), for tests that restart or stop the server: the shared server
on 127.0.0.1:5432 is never disturbed.

``initdb`` refuses to run as root, so as root the cluster is made and run as the
``postgres`` OS user (``runuser -u postgres --``). Skipped, saying why, only when no
PostgreSQL server binaries are installed."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INITDB_ARGS = ("-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")


def _bindir() -> Path | None:
    found = os.environ.get("FLOWSTATE_PG_BINDIR")
    if found and (Path(found) / "initdb").exists():
        return Path(found)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    data: Path
    port: int
    log: Path
    as_user: list[str]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def restart_immediate(self) -> None:
        """``pg_ctl restart -m immediate``: every session is cut (no shutdown checkpoint,
        like a crash), then the server comes back on the same port."""
        self.pg_ctl("restart", "-m", "immediate", "-w", "-l", str(self.log))


@contextlib.contextmanager
def own_postgres() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) are installed")
    root = Path(tempfile.mkdtemp(prefix="flowstate-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    port = _free_port()
    cluster = Cluster(bindir, data, port, log, as_user)
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), *INITDB_ARGS],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        )
        cluster.pg_ctl("start", "-w", "-o", options, "-l", str(log))
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.pg_ctl("stop", "-m", "immediate", "-w", timeout=60)
        shutil.rmtree(root, ignore_errors=True)
