"""The demo's live view: heat-pump decisions carry heatd's reasons, and redrawing the view
never erases what was printed above it (the mosquitto_sub line)."""

from __future__ import annotations

import io

from heatd.hil.demo_screen import DECISIONS_SHOWN, Decisions, LiveScreen, view

START = {"ts": 1, "kind": "transition", "layer": "optimiser", "change": "hp_state",
         "subject": "hp", "from": "off", "to": "starting", "reason": "heat wanted"}
STOP = {**START, "layer": "envelope", "from": "running", "to": "stopping",
        "reason": "safety stop: coolant supply unknown"}
RESET = {"ts": 2, "kind": "transition", "layer": "sequencer", "change": "hp_reset",
         "subject": "hp", "from": None, "to": None, "reason": "automatic reset 1 of 3"}
LIMIT = {"ts": 3, "kind": "transition", "layer": "envelope", "change": "limit_set",
         "subject": "valve_max", "from": None, "to": "0", "reason": "supply rising"}


def test_every_heat_pump_decision_keeps_its_reason() -> None:
    decisions = Decisions()
    for event, hour in ((START, 0.25), (LIMIT, 0.3), (STOP, 1.5), (RESET, 2.0), ("x", 2.1)):
        decisions.take(event, hour)
    assert decisions.lines == [
        "  0.25 h  heat pump off -> starting: heat wanted (optimiser)",
        "  1.50 h  heat pump running -> stopping: safety stop: coolant supply unknown "
        "(envelope)",
        "  2.00 h  heat pump reset: automatic reset 1 of 3 (sequencer)",
    ]


def test_the_view_shows_the_latest_decisions_with_reasons_and_the_limits() -> None:
    decisions = Decisions()
    for k in range(DECISIONS_SHOWN + 2):
        decisions.take({**START, "reason": f"reason {k}"}, k / 10)
    control = {"mode": "auto", "hp_state": "running", "cooling_margin": 3.25,
               "limits": [{"name": "hp_start", "layer": "sequencer",
                           "reason": "minimum off time"}]}
    screen = view(control, {"supply_temp_a": 41.0, "rack_inlet_01": 30.5}, {"heat": 120.0},
                  decisions, "heatd demo", 0.5).splitlines()
    assert screen[0] == "heatd demo"
    assert "limits  hp_start (sequencer: minimum off time)" in screen
    shown = [line for line in screen if "heat pump off -> starting" in line]
    assert [line.split(": ", 1)[1] for line in shown] == [
        f"reason {k} (optimiser)" for k in range(2, DECISIONS_SHOWN + 2)]
    empty = view({}, {}, {}, Decisions(), "head", 0.0)
    assert "heat-pump decisions: none yet" in empty


def test_redrawing_goes_back_over_its_own_frame_only() -> None:
    out = io.StringIO()
    out.write("  mosquitto_sub -p 1883 -t 'heatd/demo/#' -v\n")
    screen = LiveScreen(out, tty=True, width=30)
    screen.show("one\ntwo\nthree", 0.0)
    screen.show("uno\n" + "x" * 80, 1.0)
    screen.show("only", 2.0)
    text = out.getvalue()
    assert text.startswith("  mosquitto_sub -p 1883")
    assert "\033[H" not in text and "\033[2J" not in text  # never home nor clear the screen
    frames = text.split("\033[")
    assert frames[1].startswith("3A\r") and frames[3].startswith("2A\r")  # up by its lines
    assert "x" * 30 + "\n" in text and "x" * 31 not in text  # cut to the width


def test_off_a_terminal_a_frame_every_interval_without_escapes() -> None:
    out = io.StringIO()
    screen = LiveScreen(out, tty=False, width=80, every_s=15)
    for second in range(31):
        screen.show(f"frame {second}", float(second))
    assert out.getvalue() == "frame 0\n\nframe 15\n\nframe 30\n\n"
