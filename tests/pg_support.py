"""A throwaway PostgreSQL cluster for the tests (no tests here).

One cluster per test process (pytest-xdist worker), started on first use with the server's
own tools: `initdb` into a temporary folder, `pg_ctl start` listening only on a unix socket
in that folder, trust authentication for the local superuser, durability off (a test
database is thrown away). Each test gets a database of its own. initdb refuses to run as
root: as root the cluster runs as `nobody` (runuser). Without the server binaries (looked up
on PATH, then in /usr/lib/postgresql/*/bin) or the psycopg driver, the PostgreSQL tests are
skipped with the reason."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__test__ = False
SERVER_TOOLS = ("initdb", "pg_ctl")


def find_bin_dir() -> Path | None:
    """The folder with initdb and pg_ctl: PATH first, then Debian's versioned folders."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all((Path(folder) / tool).is_file() for tool in SERVER_TOOLS):
            return Path(folder)
    return None


def why_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests skipped: the psycopg driver is not installed (pip install 'cl_toolkit[postgres]')"
    if find_bin_dir() is None:
        return ("PostgreSQL tests skipped: no server binaries (initdb, pg_ctl) on PATH or in "
                "/usr/lib/postgresql/*/bin; install Debian's `postgresql` package (.ci/run does as root)")
    return None


class Cluster:
    """A running cluster; `database()` hands out a new empty database's URL."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="clt-pg-"))  # short: a socket path has ~100 bytes
        self.data = self.root / "data"
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            os.chown(self.root, _uid("nobody"), -1)
        self._names = itertools.count()

    def start(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        options = (f"-k {self.root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.root}"

    def database(self) -> str:
        """A fresh database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin_dir / tool), *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid
