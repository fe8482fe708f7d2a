"""A null-modem cable in software: two linked pseudo terminals made by socat, so the
simulator can serve a Modbus RTU line that heatd opens by the path its site file names,
with real RTU framing on the wire and no adapters.

A pseudo terminal carries 8 data bits without parity only (the kernel refuses the rest),
so a simulated line must be configured that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from heatd.config import ModbusRtuDeviceConfig

START_TIMEOUT_S = 5.0


def pty_problem(device: ModbusRtuDeviceConfig) -> str | None:
    """Why a line with this framing cannot run over a pseudo terminal, or None."""
    if device.parity != "N" or device.bytesize != 8:
        return (f"{device.serial_port}: a pseudo terminal carries 8 data bits without parity "
                f"only, this line has {device.bytesize}{device.parity}; give it parity N and "
                "bytesize 8 to simulate it, or connect real adapters with --serial")
    return None


class PtyPair:
    """``link`` (the site's serial port path) and ``link + '.sim'`` joined back to back.

    Both paths are symbolic links socat creates and removes; the directory must exist and
    neither path may be taken.
    """

    def __init__(self, link: str) -> None:
        self.link = link
        self.sim_end = f"{link}.sim"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise OSError("socat is not installed: it makes the pseudo terminals that stand "
                          "in for a serial line (apt-get install socat)")
        self._check_free()
        self._proc = await asyncio.create_subprocess_exec(
            socat, f"pty,raw,echo=0,link={self.link}", f"pty,raw,echo=0,link={self.sim_end}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        loop = asyncio.get_running_loop()
        end = loop.time() + START_TIMEOUT_S
        while not self._linked():
            if self._proc.returncode is not None or loop.time() > end:
                error = await self._error()
                await self.stop()
                raise OSError(f"socat could not link {self.link}: {error or 'timed out'}")
            await asyncio.sleep(0.01)

    async def _error(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        if self._proc.returncode is None:
            return ""
        return (await self._proc.stderr.read()).decode(errors="replace").strip()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._unlink()

    # The path checks below are a stat or an unlink of a local path each: quick enough for
    # the event loop, and polled every 10 ms while socat starts, so no thread for them.

    def _check_free(self) -> None:
        for path in (self.link, self.sim_end):
            if os.path.lexists(path):
                raise OSError(f"{path} exists already: not replacing it with a pseudo terminal")
            if not Path(path).parent.is_dir():
                raise OSError(f"{Path(path).parent} is not a directory: cannot make {path}")

    def _linked(self) -> bool:
        return os.path.exists(self.link) and os.path.exists(self.sim_end)

    def _unlink(self) -> None:
        for path in (self.link, self.sim_end):  # socat removes them; a kill does not
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(path):
                    os.unlink(path)
