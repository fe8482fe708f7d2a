"""A real mosquitto on its own port with its own temporary config, never the system
broker: for the tests and the benchmarks.

``Mosquitto`` is an async context manager that can also be stopped, killed and restarted
on the same port while a client under test keeps running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiomqtt

from heatd.hil.rig.waiting import until
from heatd.hil.siteports import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port`` without persistence (a restart loses
    every retained message, which is what a test of republishing needs)."""

    def __init__(self, port: int | None = None, *, users: dict[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.users = users or {}
        self._dir = tempfile.TemporaryDirectory(prefix="heatd-mosquitto-")
        self.log = Path(self._dir.name) / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type all",
        ]
        if os.geteuid() == 0:  # else mosquitto drops to its own user and cannot read our files
            lines.append("user root")
        if self.users:
            pw = Path(self._dir.name) / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._config())],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        proc = self._proc

        async def listening() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                return False
            writer.close()
            return True

        await until(listening, timeout, what=f"mosquitto listening on {self.port}")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM: orderly; SIGKILL: as if the host died)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
        await asyncio.get_running_loop().run_in_executor(None, self._proc.wait)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def client(self, **kwargs: Any) -> aiomqtt.Client:
        """An aiomqtt client for this broker (MQTT v5 unless ``protocol`` says otherwise)."""
        kwargs.setdefault("protocol", aiomqtt.ProtocolVersion.V5)
        return aiomqtt.Client(self.host, self.port, **kwargs)

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self._dir.cleanup()
