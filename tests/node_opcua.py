"""node-opcua as a test peer: a second OPC UA stack, so heatd's client is tried against a
server its own library did not write.

``tests/peers/package.json`` pins node-opcua; the first test that needs it runs ``npm ci``
there (under a file lock, so parallel runs install once) into ``tests/peers/node_modules``.
Without npm the tests that need it are skipped, saying so."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from heatd.hil.siteports import free_port

PEERS = Path(__file__).parent / "peers"
SCRIPT = PEERS / "opcua_server.js"
START_GUARD = 60.0
"""Upper bound on a start; node-opcua takes a few seconds on a loaded machine."""


def ensure_node_opcua() -> None:
    """Install the pinned node-opcua once; skip the calling test when npm is absent."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("interop with a second OPC UA stack needs Node.js (20 or later) and npm "
                    "on PATH to install node-opcua; they are not installed here")
    installed = PEERS / "node_modules" / ".package-lock.json"
    with open(PEERS / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed.exists() and installed.stat().st_mtime >= \
                (PEERS / "package-lock.json").stat().st_mtime:
            return
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                cwd=PEERS, capture_output=True, text=True, timeout=600,
                                check=False)
        assert result.returncode == 0, f"npm ci failed:\n{result.stderr[-3000:]}"


@dataclass
class Variable:
    id: str
    type: str
    value: object
    writable: bool = True


@dataclass
class Namespace:
    uri: str
    variables: list[Variable] = field(default_factory=list)


@dataclass
class NodeOpcUaServer:
    """One node-opcua server process; ``start`` again (same port) after ``stop``."""

    directory: Path
    namespaces: Sequence[Namespace]
    security: dict[str, Any] | None = None
    application_uri: str = "urn:heatd:test:node-opcua"
    port: int = field(default_factory=free_port)
    _process: asyncio.subprocess.Process | None = None
    _drain: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = self.directory / f"node-opcua-{self.port}.json"
        config.write_text(json.dumps({
            "port": self.port,
            "applicationUri": self.application_uri,
            "namespaces": [{"uri": ns.uri, "variables": [v.__dict__ for v in ns.variables]}
                           for ns in self.namespaces],
            "security": self.security,
        }))
        log = self.directory / f"node-opcua-{self.port}.log"
        err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._process = await asyncio.create_subprocess_exec(
                "node", str(SCRIPT), str(config), cwd=PEERS,
                stdout=asyncio.subprocess.PIPE, stderr=err)
        finally:
            os.close(err)  # node has its own copy
        try:
            said = await asyncio.wait_for(self._ready(), START_GUARD)
        except TimeoutError:
            await self.stop()
            raise
        assert said is None, f"node-opcua did not start:\n{said}{log.read_text()[-3000:]}"
        assert self._process is not None and self._process.stdout is not None
        # The stream is handed over now: a stop may clear _process before the task runs.
        self._drain = asyncio.create_task(self._discard_output(self._process.stdout))

    @staticmethod
    async def _discard_output(stream: asyncio.StreamReader) -> None:
        """Keep reading what the server prints, so a full pipe never blocks it."""
        while await stream.read(65536):
            pass

    async def _ready(self) -> str | None:
        """None once the server says ``ready``; what it said instead if it exits first.
        node-opcua writes its warnings to stdout too."""
        assert self._process is not None and self._process.stdout is not None
        said = []
        while line := await self._process.stdout.readline():
            if line.startswith(b"ready"):
                return None
            said.append(line.decode(errors="replace"))
        return "".join(said)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None
