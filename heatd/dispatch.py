"""Operator commands (mode, override, reset_lockout, reload) carried out on the daemon.

The MQTT link validates and audits a command; this turns it into a call on
:class:`Controls`, the few things a command may ask of the daemon, so the command side
never holds the daemon itself. Every call goes through the control core's command
functions, so no command can bypass cooling priority.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from heatd.config import SiteConfig
from heatd.control import roles as R
from heatd.control.events import Cause
from heatd.control.sequencer import Wait
from heatd.control.state import Mode, State
from heatd.mqtt.command_payloads import (
    Command,
    CommandResult,
    ModeCommand,
    OverrideCommand,
    ReloadCommand,
    ResetLockoutCommand,
)
from heatd.mqtt.payload import epoch_ms
from heatd.role_units import percent_factor


class Controls(Protocol):
    """What commands ask of the daemon."""

    site: SiteConfig
    config_hash: str
    state: State

    def set_mode(self, mode: str, ttl: float | None, by: str) -> None: ...

    def lease_wait(self, role: str, value: float | bool) -> Wait | None: ...

    def set_override(self, role: str, value: float | bool, ttl: float, by: str) -> None: ...

    def clear_override(self, role: str, by: str) -> None: ...

    def set_output_lease(self, role: str, value: float, ttl: float, by: str) -> None: ...

    def clear_output_lease(self, role: str, by: str) -> None: ...

    def reset_lockout(self, by: str) -> tuple[bool, str]: ...

    async def reload(self) -> tuple[bool, str]: ...


class CommandDispatch:
    """The link's command handler (``handle``), bound to the controls it acts on."""

    def __init__(self, controls: Controls) -> None:
        self.controls = controls

    async def handle(self, command: Command) -> CommandResult:
        controls = self.controls
        by = command.by or "mqtt"
        if isinstance(command, ModeCommand):
            controls.set_mode(command.mode, command.ttl, by)
            return CommandResult(True, f"mode {command.mode}", {"mode": command.mode,
                                                                "ttl": command.ttl})
        if isinstance(command, OverrideCommand):
            if command.role in R.ENGINEERING_OUTPUTS:
                return self._output_lease(command, by)
            return self._override(command, by)
        if isinstance(command, ResetLockoutCommand):
            accepted, reason = controls.reset_lockout(by)
            return CommandResult(accepted, reason, {"hp_state": controls.state.seq.state.value})
        if isinstance(command, ReloadCommand):
            accepted, reason = await controls.reload()
            return CommandResult(accepted, reason, {"config_hash": controls.config_hash})
        return CommandResult(False, f"unknown command {command.name}")

    def _output_lease(self, command: OverrideCommand, by: str) -> CommandResult:
        """A lease on an engineering output (``setpoints:``), in its own units."""
        role = command.role or ""
        if command.value is None:
            self.controls.clear_output_lease(role, by)
            return CommandResult(True, f"override on {role} cleared", {"role": role})
        value = float(command.value)
        self.controls.set_output_lease(role, value, float(command.ttl or 0.0), by)
        return CommandResult(True, "lease set", {"role": role, "value": value,
                                                 "ttl": command.ttl})

    def _override(self, command: OverrideCommand, by: str) -> CommandResult:
        """A lease on a control role; a point's percent is taken as the role's fraction.

        A lease the heat pump's protection defers says so and by how long; one it would
        hold off for the whole lease is refused, since it would never act."""
        controls = self.controls
        role = command.role or ""
        if command.value is None:
            controls.clear_override(role, by)
            return CommandResult(True, f"override on {role} cleared", {"role": role})
        value = command.value
        if command.point is not None and not isinstance(value, bool):
            value = value / percent_factor(role, controls.site.point(command.point))
        ttl = float(command.ttl or 0.0)
        detail: dict[str, Any] = {"role": role, "value": value, "ttl": command.ttl}
        wait = controls.lease_wait(role, value)
        if wait is not None and wait.seconds >= ttl:
            return CommandResult(False, f"{wait.reason}, beyond this lease of {ttl:g} s: it "
                                 "would expire before it acts; send a longer ttl"
                                 + (", or mode safe to stop the heat pump now"
                                    if wait.cause is Cause.MIN_ON_TIME else ""),
                                 {**detail, **_deferred(wait)})
        controls.set_override(role, value, ttl, by)
        reason = "lease set"
        if wait is not None:
            reason += f"; {wait.reason}"
            detail.update(_deferred(wait))
        if controls.state.mode is Mode.SAFE:
            reason += "; safe mode holds the outputs until it ends"
        return CommandResult(True, f"{reason}; the cooling envelope still bounds it", detail)


def _deferred(wait: Wait) -> dict[str, Any]:
    """An answer's account of a deferral: how long and until when (epoch ms, as ``ts``)
    the lease waits before it can act, and why."""
    return {"deferred_s": round(wait.seconds, 1),
            "deferred_until": epoch_ms(time.time() + wait.seconds),
            "deferred_by": wait.cause.value}
