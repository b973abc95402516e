"""The systemd units of deploy/services, read and run as systemd would, on a fresh host in a directory.

No systemd here (tests run as an ordinary process), so this module does what systemd does before
and while starting a unit, and nothing more: it applies ``deploy/tmpfiles.d`` (``d`` lines), creates
each ``StateDirectory=``, refuses a unit whose ``ReadWritePaths=`` or ``EnvironmentFile=`` (without
``-``) is missing, reads ``Environment=`` then ``EnvironmentFile=`` (which overrides it), and expands
``${VAR}`` in the command lines. Absolute paths are mapped into the host directory, except
``/opt/xrd-strain`` (the install: this repository and its ``.venv``). What a unit would need and
the host does not have is an error, exactly where systemd would fail the unit.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "deploy" / "services"
TMPFILES = REPO / "deploy" / "tmpfiles.d" / "xrd-strain.conf"
INSTALL = "/opt/xrd-strain"


class UnitStartError(RuntimeError):
    """What systemd would refuse: a missing path or environment file."""


@dataclasses.dataclass
class Unit:
    name: str
    sections: dict[str, dict[str, list[str]]]

    def get(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def one(self, key: str, section: str = "Service", default=None):
        values = self.get(key, section)
        return values[-1] if values else default


def parse_unit(path) -> Unit:
    """Sections of a unit file; a key given several times keeps every value, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return Unit(Path(path).name, sections)


def units() -> dict[str, Unit]:
    return {p.name: parse_unit(p) for p in sorted(SERVICES.iterdir()) if p.suffix in (".service", ".timer")}


def read_env_file(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    return env


class Host:
    """A fresh host under ``root``: nothing exists but what the deploy files make.

    Parameters
    ----------
    root : Path
        Empty directory standing for ``/``.
    ports : dict
        Ports of the units' command lines to replace (``{5579: free port}``): tests must not
        take the deployed ports of the machine they run on.
    """

    def __init__(self, root, *, ports: dict[int, int] | None = None):
        self.root = Path(root)
        self.ports = {str(k): str(v) for k, v in (ports or {}).items()}

    def path(self, p: str) -> Path:
        if p == INSTALL or p.startswith(INSTALL + "/"):
            return REPO / p[len(INSTALL) + 1 :]
        return self.root / p.lstrip("/")

    def apply_tmpfiles(self, conf=TMPFILES) -> list[Path]:
        made = []
        for line in Path(conf).read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "d":
                self.path(fields[1]).mkdir(parents=True, exist_ok=True)
                made.append(self.path(fields[1]))
        return made

    def write_env_file(self, path: str, text: str) -> None:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def prepare(self, unit: Unit) -> dict[str, str]:
        """Create the unit's state directories, check its paths; return its environment."""
        for value in unit.get("StateDirectory"):
            for d in value.split():
                self.path(f"/var/lib/{d}").mkdir(parents=True, exist_ok=True)
        for value in unit.get("ReadWritePaths"):
            for p in value.split():
                if not p.startswith("-") and not self.path(p).exists():
                    raise UnitStartError(f"{unit.name}: ReadWritePaths={p} does not exist (status=226/NAMESPACE)")
        env: dict[str, str] = {}
        for value in unit.get("Environment"):
            for item in shlex.split(value):
                key, _, v = item.partition("=")
                env[key] = v
        for value in unit.get("EnvironmentFile"):
            optional = value.startswith("-")
            target = self.path(value.lstrip("-"))
            if not target.exists():
                if optional:
                    continue
                raise UnitStartError(f"{unit.name}: EnvironmentFile={value} does not exist")
            env.update(read_env_file(target.read_text()))
        return env

    def command(self, unit: Unit, env: dict[str, str], key: str = "ExecStart", index: int = 0):
        """``(argv, ignore_failure)`` of one command line, expanded and mapped into the host."""
        line = unit.get(key)[index]
        ignore = line.startswith("-")
        line = line.lstrip("-")

        def expand(match):
            name = match.group(1)
            if name not in env:
                raise UnitStartError(f"{unit.name}: {key} uses ${{{name}}}, set by no Environment= or file")
            return env[name]

        argv = [re.sub(r"\$\{(\w+)\}", expand, word) for word in shlex.split(line)]
        out = []
        for i, word in enumerate(argv):
            if word.startswith("/"):
                word = str(self.path(word))
            if i > 0 and argv[i - 1] == "--port" and word in self.ports:
                word = self.ports[word]
            if i > 0 and argv[i - 1] == "--host" and word == "0.0.0.0":
                word = "127.0.0.1"  # a test listens on loopback only
            out.append(word)
        return out, ignore

    def process_env(self, env: dict[str, str]) -> dict[str, str]:
        """The unit's environment for a child process: paths mapped into the host."""

        def mapped_value(v: str) -> str:
            if v.startswith("/"):
                return str(self.path(v))
            if v.startswith("sqlite:////"):  # a database file: into the host too
                return "sqlite:///" + str(self.path(v[len("sqlite:///") :]))
            return v

        mapped = {k: mapped_value(v) for k, v in env.items()}
        return dict(os.environ, **mapped, PYTHONUNBUFFERED="1")

    def run(self, unit: Unit, env: dict[str, str], key: str = "ExecStart", index: int = 0, **kwargs):
        argv, ignore = self.command(unit, env, key, index)
        cwd = unit.one("WorkingDirectory")
        return subprocess.run(
            argv,
            env=self.process_env(env),
            cwd=self.path(cwd) if cwd else None,
            capture_output=True,
            text=True,
            **kwargs,
        ), ignore

    def start(self, unit: Unit, env: dict[str, str], key: str = "ExecStart", **kwargs) -> subprocess.Popen:
        argv, _ = self.command(unit, env, key)
        cwd = unit.one("WorkingDirectory")
        return subprocess.Popen(
            argv,
            env=self.process_env(env),
            cwd=self.path(cwd) if cwd else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )
