"""``dsnode space``: a local data space of N nodes on loopback, for trying and testing the multi-node features.

``up`` creates one home per node under a directory (node 2 on PostgreSQL when one is given), all anchoring on one
embedded chain (a shared journal), starts each node as its own ``dsnode serve`` process on free ports, waits for
them, and pins every node as a peer of every other. ``space.json`` (0600) records names, URLs, PIDs and operator
tokens. ``down`` stops them with SIGTERM (SIGKILL after a grace period); ``status`` shows what answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from node.runtime import init_home
from node.settings import Settings

__all__ = ["SpaceNode", "space_down", "space_status", "space_up"]

SPACE_FILE = "space.json"
# The nodes this process started: they outlive `space up`, and `space down` in the same process reaps them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class SpaceNode:
    name: str
    home: str
    http_url: str
    flight_url: str
    database_url: str | None
    operator_token: str
    public_key: str
    pid: int | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_database(admin_url: str, name: str) -> str:
    """Create database ``name`` (dropping a leftover one) and return its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


def _config(settings: dict[str, Any]) -> str:
    lines = ["# written by `dsnode space up`", "[node]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a node exited at start (code {proc.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"a node did not answer at {url} within {timeout:.0f} s; see {log}")


def space_up(directory: Path, nodes: int = 3, postgres_admin: str | None = None,
             extra: dict[str, Any] | None = None) -> list[SpaceNode]:
    """Create and start the space (see the module text). ``postgres_admin`` is a libpq URL able to create
    databases; node 2 then runs on PostgreSQL. ``extra`` settings go into every node's config."""
    if not 1 <= nodes <= 16:
        raise ValueError("a local space has 1 to 16 nodes")
    directory = directory.resolve()
    if (directory / SPACE_FILE).exists():  # a space stopped earlier: start the same nodes again
        stopped = load_space(directory)
        if any(_alive(m.pid) for m in stopped):
            raise FileExistsError(f"the space in {directory} is running; run: dsnode space down --dir {directory}")
        _start(stopped)
        _write(directory, stopped)
        return stopped
    directory.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
    members: list[SpaceNode] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(1, nodes + 1):
            name, home = f"node{i}", directory / f"node{i}"
            http_port, flight_port = _free_port(), _free_port()
            database = _postgres_database(postgres_admin, f"dsnode_space_{tag}_{i}") if (
                postgres_admin and i == 2) else None
            config: dict[str, Any] = {
                "node_name": name, "http_host": "127.0.0.1", "http_port": http_port, "flight_host": "127.0.0.1",
                "flight_port": flight_port, "chain_journal": str(directory / "chain.jsonl"),
                "federation_refresh_seconds": 5.0, **(extra or {})}
            if database:
                config["database_url"] = database
            home.mkdir(parents=True, exist_ok=True)
            (home / "config.toml").write_text(_config(config), encoding="utf-8")
            result = init_home(Settings.load(home=home))
            members.append(SpaceNode(name, str(home), f"http://127.0.0.1:{http_port}",
                                     f"grpc://127.0.0.1:{flight_port}", database, result.operator_token,
                                     result.public_key))
        procs = _start(members)
        for member in members:  # a full mesh: every node pins and follows every other
            for other in members:
                if other is not member:
                    reply = httpx.post(f"{member.http_url}/v1/peers", timeout=30,
                                       headers={"authorization": f"Bearer {member.operator_token}"},
                                       json={"http_url": other.http_url, "public_key": other.public_key})
                    if reply.status_code != 201:
                        raise RuntimeError(f"{member.name} could not pin {other.name}: {reply.text}")
        _write(directory, members)
        return members
    except BaseException:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
        raise


def _start(members: list[SpaceNode]) -> list[subprocess.Popen[bytes]]:
    """Start every node as its own ``dsnode serve`` process and wait until each answers."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for member in members:
            log = Path(member.home) / "serve.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("DSNODE_")} | {"PYTHONUNBUFFERED": "1"}
            with log.open("ab") as out:
                proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve", "--home", member.home],  # noqa: S603
                                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
            procs.append(proc)
            _CHILDREN[proc.pid] = proc
            member.pid = proc.pid
        for member, proc in zip(members, procs, strict=True):
            _wait_healthy(member.http_url, proc, Path(member.home) / "serve.log")
        return procs
    except BaseException:
        for proc in procs:
            proc.terminate()
            proc.wait(20)
        raise


def _write(directory: Path, members: list[SpaceNode]) -> None:
    path = directory / SPACE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"nodes": [asdict(m) for m in members]}, fh, indent=2)


def load_space(directory: Path) -> list[SpaceNode]:
    path = directory.resolve() / SPACE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory} holds no space; run: dsnode space up --dir {directory}")
    return [SpaceNode(**m) for m in json.loads(path.read_text(encoding="utf-8"))["nodes"]]


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def space_status(directory: Path) -> list[dict[str, Any]]:
    out = []
    for m in load_space(directory):
        try:
            healthy = httpx.get(f"{m.http_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            healthy = False
        out.append({"name": m.name, "http_url": m.http_url, "flight_url": m.flight_url, "pid": m.pid,
                    "running": _alive(m.pid), "healthy": healthy,
                    "database": "postgresql" if m.database_url else "sqlite"})
    return out


def space_down(directory: Path, grace: float = 20.0) -> tuple[int, int]:
    """Stop every node (SIGTERM, then SIGKILL after ``grace`` seconds); returns how many were running and how
    many of those had to be killed."""
    members = load_space(directory)
    running = [m for m in members if _alive(m.pid)]
    for m in running:
        assert m.pid is not None
        os.kill(m.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = 0
    for m in running:
        assert m.pid is not None
        while _alive(m.pid) and time.monotonic() < deadline:
            _reap(m.pid)
            time.sleep(0.05)
        if _alive(m.pid):
            os.kill(m.pid, signal.SIGKILL)
            killed += 1
        _reap(m.pid)
    for m in members:  # children of this process: collect them (Popen copes if they were reaped already)
        child = _CHILDREN.pop(m.pid, None) if m.pid is not None else None
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
    for m in members:
        m.pid = None
    _write(directory.resolve(), members)  # `space up` starts the same nodes again
    return len(running), killed


def _reap(pid: int) -> None:
    """Collect a child that exited (when this process started it), so it is not left a zombie that looks alive."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
