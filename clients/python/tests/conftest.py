"""A real `hilo serve` for the suite: started once (``HILO_BIN``, default the repository's
target/debug/hilo) on a free port with a database of its own; keys of a few tenants made
before it starts; the fixture workflows (tests/workflows) imported; stopped at the end."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hilo_client import AsyncClient, Client

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE / "workflows"
REPO = HERE.parents[2]


@dataclass(frozen=True)
class Server:
    url: str
    keys: dict[str, str]
    """By role: ``admin`` and ``read`` (tenant acme), ``other`` (tenant other), ``hil``
    (tenant hil: conversations and agents), ``aio`` (tenant aio: the async suite)."""
    log: Path

    def client(self, role: str = "admin") -> Client:
        return Client(self.url, self.keys[role])

    def async_client(self, role: str = "aio") -> AsyncClient:
        return AsyncClient(self.url, self.keys[role])


# role -> (tenant, scopes)
KEYS = {
    "admin": ("acme", "admin"),
    "read": ("acme", "read"),
    "other": ("other", "admin"),
    "hil": ("hil", "admin"),
    "aio": ("aio", "admin"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hilo_bin() -> str:
    path = os.environ.get("HILO_BIN") or str(REPO / "target" / "debug" / "hilo")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no hilo binary at {path}: build it (cargo build --bin hilo) or set HILO_BIN")
    return path


def _start(
    hilo: str, env: dict[str, str], work: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    for _ in range(3):  # the free port may be taken in between: try another
        port = _free_port()
        out = open(log, "ab")
        proc = subprocess.Popen(
            [hilo, "serve", "--addr", f"127.0.0.1:{port}"],
            env=env,
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            break
    pytest.fail("hilo serve did not start:\n" + log.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    hilo = _hilo_bin()
    work = tmp_path_factory.mktemp("hilo")
    # Nothing of the caller's hilo setup (HILO_SERVER would send the CLI elsewhere).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HILO_")}
    # The timers some tests leave sleeping need not hold the shutdown for 10 s.
    (work / "hilo.toml").write_text("[server]\nshutdown_grace_ms = 1000\n")
    env.update(
        HILO_DB=str(work / "hilo.db"),
        HILO_MASTER_KEY_FILE=str(work / "master.key"),
        HILO_CONFIG=str(work / "hilo.toml"),
        NO_COLOR="1",
    )
    keys = {}
    for role, (tenant, scopes) in KEYS.items():
        done = subprocess.run(
            [
                hilo,
                "keys",
                "create",
                "--tenant",
                tenant,
                "--scopes",
                scopes,
                "--name",
                f"pytest-{role}",
                "-q",
            ],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            pytest.fail(f"hilo keys create failed: {done.stderr}")
        keys[role] = done.stdout.strip().splitlines()[-1]
    log = work / "serve.log"
    proc, url = _start(hilo, env, work, log)
    srv = Server(url=url, keys=keys, log=log)
    try:
        for role in ("admin", "hil", "aio"):
            with srv.client(role) as c:
                for f in sorted(WORKFLOWS.glob("*.yaml")):
                    c.workflows.import_(f)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if request.session.testsfailed:
            print(
                "\n--- hilo serve log (last lines) ---\n" + log.read_text(errors="replace")[-4000:]
            )


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client("admin") as c:
        yield c


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[AsyncClient]:
    async with server.async_client("aio") as c:
        yield c
