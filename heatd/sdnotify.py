"""systemd's notification socket: READY, WATCHDOG and STATUS.

The message is one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``; without that
variable (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: str | int) -> None:
        """Send e.g. ``notify(READY=1, STATUS="running")``; never raises."""
        if self._socket is None or not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        # systemd gone or busy: the watchdog will tell if it matters
        with contextlib.suppress(OSError):
            self._socket.sendto(message.encode(), self._address)

    def watchdog_interval(self) -> float | None:
        """Seconds between pings systemd expects (half of WatchdogSec), or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
