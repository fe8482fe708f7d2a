"""What ``make demo`` shows while it runs: a live view of heatd's topics, redrawn in place,
and every heat-pump decision with the reason heatd gave for it on its events topic.

The view is redrawn by moving the cursor up over the previous frame and clearing below
it, never by clearing the screen: what was printed above it (the ``mosquitto_sub`` line to
watch the topics, the log path) stays where the operator can copy it.
"""

from __future__ import annotations

from typing import Any, TextIO

DECISIONS_SHOWN = 6
"""Latest heat-pump decisions on the live view; the summary lists all of them."""


class Decisions:
    """Heat-pump state changes and resets announced on ``<base>/events``, as lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def take(self, event: Any, plant_h: float) -> None:
        """Keep ``event`` (a decoded events message) if it is a heat-pump decision."""
        if not isinstance(event, dict) or event.get("subject") != "hp":
            return
        change, reason = event.get("change"), event.get("reason") or "no reason given"
        by = event.get("layer", "?")
        if change == "hp_state":
            what = f"{event.get('from')} -> {event.get('to')}"
        elif change == "hp_reset":
            what = "reset"
        else:
            return
        self.lines.append(f"{plant_h:6.2f} h  heat pump {what}: {reason} ({by})")


def view(control: dict[str, Any], cdu: dict[str, Any], hp: dict[str, Any],
         decisions: Decisions, head: str, delivered_mwh: float) -> str:
    """The live screen: what an operator would watch on the MQTT topics."""
    cycle = control.get("cycle", {})
    sp = control.get("setpoints", {})
    limits = control.get("limits", [])
    latest = decisions.lines[-DECISIONS_SHOWN:]
    lines = [
        head,
        f"cycle   {cycle.get('cycles', 0):6d} cycles  period {cycle.get('period_s', 0):.1f} s  "
        f"jitter p50 {cycle.get('jitter_ms_p50', 0):.1f} ms  p99 "
        f"{cycle.get('jitter_ms_p99', 0):.1f} ms  overruns {cycle.get('overruns', 0)}",
        f"mode    {control.get('mode')}   heat pump {control.get('hp_state')}   cooling margin "
        f"{_num(control.get('cooling_margin'), '.1f')} K",
        f"coolant supply {_num(cdu.get('supply_temp_a'), '.1f')} degC   return "
        f"{_num(cdu.get('return_temp'), '.1f')} degC   rack inlet (max) "
        f"{_num(_hottest_inlet(cdu), '.1f')} degC",
        f"setpoints  valve {_num(sp.get('valve.recovery'), '.2f')}  fan "
        f"{_num(sp.get('drycooler.fan'), '.2f')}  heat pump "
        f"{'on' if sp.get('hp.enable') else 'off'} at {_num(sp.get('hp.capacity'), '.2f')}",
        f"heat pump  {_num(hp.get('heat'), '.0f')} kW heat  {_num(hp.get('power'), '.0f')} kW "
        f"electric   delivered so far {delivered_mwh:.2f} MWh",
        "limits  " + (", ".join(f"{x['name']} ({x['layer']}: {x['reason']})" for x in limits)
                      or "none: recovering freely"),
        "heat-pump decisions" + ("" if latest else ": none yet"),
        *(f"  {line}" for line in latest),
    ]
    return "\n".join(lines)


class LiveScreen:
    """Shows one frame after another. On a terminal each frame replaces the last in place
    (cursor up over it, clear below), lines cut to the terminal's width so the count of
    lines to go back over stays true; elsewhere (a log, a pipe) a frame every
    ``every_s`` seconds, one after the other."""

    def __init__(self, out: TextIO, tty: bool, width: int, every_s: float = 15.0) -> None:
        self.out = out
        self.tty = tty
        self.width = max(width, 20)
        self.every_s = every_s
        self._drawn = 0
        self._shown_at: float | None = None

    def show(self, text: str, now: float) -> None:
        if not self.tty:
            if self._shown_at is None or now - self._shown_at >= self.every_s:
                self.out.write(text + "\n\n")
                self.out.flush()
                self._shown_at = now
            return
        lines = [line[: self.width] for line in text.splitlines()]
        back = f"\033[{self._drawn}A\r\033[J" if self._drawn else ""
        self.out.write(back + "\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)


def _hottest_inlet(cdu: dict[str, Any]) -> float | None:
    inlets = [v for k, v in cdu.items() if k.startswith("rack_inlet") and isinstance(v, float)]
    return max(inlets, default=None)


def _num(value: Any, fmt: str) -> str:
    return "-" if not isinstance(value, int | float) else format(value, fmt)
