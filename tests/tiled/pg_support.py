"""A throwaway PostgreSQL cluster and the deployed Tiled configuration on it (tests only).

``PostgresCluster`` runs the server binaries of the machine (``initdb``, ``pg_ctl``: Debian keeps
them in ``/usr/lib/postgresql/<version>/bin``; ``$XRD_STRAIN_PG_BIN`` overrides) on a free loopback
port, with its data and socket in a temporary directory, trust authentication for loopback only.
PostgreSQL refuses to run as root, so under root the binaries run as the ``postgres`` user
(``runuser``). ``make postgres`` installs the server on a fresh Debian machine.
"""

from __future__ import annotations

import glob
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

from tests.live_support import API_KEY, free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-test-password"


def pg_bin() -> pathlib.Path | None:
    """Directory of ``initdb`` and ``pg_ctl``, or None when no PostgreSQL server is installed."""
    if os.environ.get("XRD_STRAIN_PG_BIN"):
        return pathlib.Path(os.environ["XRD_STRAIN_PG_BIN"])
    found = shutil.which("initdb")
    if found:  # resolved: a link on PATH (as /usr/local/bin/initdb) to the real binaries' directory
        return pathlib.Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return pathlib.Path(versions[-1]).parent if versions else None


def missing_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here (None: they can)."""
    bin_dir = pg_bin()
    if bin_dir is None or not all((bin_dir / b).exists() for b in ("initdb", "pg_ctl", "createdb")):
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl) on this machine: `make postgres` installs them "
            "on Debian, or set XRD_STRAIN_PG_BIN"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


class PostgresCluster:
    """A PostgreSQL server of its own, in a temporary directory, on a free loopback port."""

    def __init__(self):
        self.bin = pg_bin()
        self.port = free_port()
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="xrd-strain-pg-"))
        self.data = self.directory / "data"
        self._as = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._n = 0

    def _run(self, *argv, timeout=120):
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed: {done.stdout}{done.stderr}")
        return done

    def start(self) -> "PostgresCluster":
        self._run(self.bin / "initdb", "-D", self.data, "-U", "tiled", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.directory / "server.log",
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def create_database(self) -> str:
        """A new empty database; return its SQLAlchemy URI (asyncpg, as Tiled uses)."""
        self._n += 1
        name = f"tiled_{self._n}"
        self._run(self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "tiled", name)
        return f"postgresql+asyncpg://tiled@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class DeployedTiled:
    """``tiled serve config deploy/tiled/config.yml`` as shipped, its catalog at ``catalog_uri``.

    The same interface as :class:`tests.live_support.TiledProcess` (``url``, ``client()``), so the
    results, refinement and catch-up tests run against it unchanged.
    """

    def __init__(self, directory, catalog_uri: str, *, env: dict | None = None, auth: str = "single-user"):
        self.directory = pathlib.Path(directory)
        self.auth = auth
        self.keys: dict[str, str] = {}
        self.catalog_uri = catalog_uri
        self.port = free_port()
        self.extra_env = env or {}
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> "DeployedTiled":
        import httpx

        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            XRD_STRAIN_TILED_DIR=str(self.directory),
            XRD_STRAIN_TILED_CATALOG=self.catalog_uri,
            TILED_ADMIN_PASSWORD=ADMIN_PASSWORD,
            TILED_SECRET_KEY="0" * 64,
            XRD_STRAIN_TILED_AUTH_DB=f"sqlite:///{self.directory}/auth.db",
            PYTHONPATH=str(REPO),
            **self.extra_env,
        )
        self.log = open(self.directory / "server.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tiled",
                "serve",
                "config",
                str(self._config()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    if self.auth == "scoped":
                        from xrd_strain_plugin.tiled.keys import create_scoped_keys

                        self.keys = create_scoped_keys(self.url, admin="admin", password=ADMIN_PASSWORD)
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"tiled serve config did not start: {(self.directory / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)

    def _config(self) -> pathlib.Path:
        """The shipped config; with ``auth="single-user"`` its authentication swapped for the tests'
        one key (the catalog and storage part as shipped), so the SQLite suite's tests, which write
        with ``API_KEY``, run against it unchanged."""
        shipped = REPO / "deploy/tiled/config.yml"
        if self.auth == "scoped":
            return shipped
        text = shipped.read_text()
        start, end = text.index("authentication:"), text.index("trees:")
        config = self.directory / "config-single-user.yml"
        config.write_text(
            text[:start] + f"authentication:\n  single_user_api_key: {API_KEY}\n"
            "  allow_anonymous_access: true\n" + text[end:]
        )
        return config

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.log.close()

    def client(self, api_key=API_KEY):
        from tiled.client import from_uri

        return from_uri(self.url, api_key=api_key)
