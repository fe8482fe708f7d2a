"""Why a connection failed, in the words a commissioning engineer looks for.

Python reports a refused TCP connection, a missing serial port and a serial port the
service may not open as ``OSError`` subclasses with errno values; pyserial wraps the
same errno in ``SerialException``; a port that refuses its settings (parity on a pseudo
terminal, a baud rate a USB adapter lacks) raises ``termios.error``, no OSError. Turning
them into one short phrase here keeps the probe's output and the ``last_error`` topic the
same for Modbus and OPC UA.
"""

from __future__ import annotations

import errno
import re
import socket
import termios

_BY_ERRNO = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.ENOENT: "no such serial port",
    errno.ENODEV: "no such serial port",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EBUSY: "device busy",
}
_NAMES_A_FILE = frozenset({errno.ENOENT, errno.ENODEV, errno.EACCES, errno.EPERM, errno.EBUSY})


def describe(exc: BaseException) -> str:
    """A short phrase for a failed connect, e.g. ``connection refused`` or
    ``no such serial port: could not open port /dev/ttyUSB9: ...``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return f"host not found: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        phrase = _BY_ERRNO.get(exc.errno or _common_errno(str(exc)))
        if phrase is None:
            return str(exc) or type(exc).__name__
        detail = exc.filename or (exc.strerror or "").split(": [Errno")[0]
        if detail and str(detail).lower() != phrase and exc.errno in _NAMES_A_FILE:
            return f"{phrase}: {detail}"
        return phrase
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        return f"serial port refused its settings: {exc.args[1]}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _common_errno(text: str) -> int:
    """The errno all attempts share when asyncio tried several addresses (IPv4 and IPv6
    for ``localhost``) and reports ``Multiple exceptions: [Errno 111] ..., [Errno 111] ...``;
    0 when they differ or none is named."""
    found = set(re.findall(r"\[Errno (\d+)\]", text))
    return int(found.pop()) if len(found) == 1 else 0
