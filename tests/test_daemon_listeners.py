"""How the daemon tells its listeners: events raised during a cycle travel with its
report, in order; anything else goes out at once; a listener that fails is logged and
the others still hear everything."""

from __future__ import annotations

from heatd.cycle_report import Availability, ControlStatus, CycleReport, Event, Notice
from heatd.cycle_stats import CycleStats
from heatd.hil.rig.logs import heatd_events
from heatd.reporting import Reporting


class Broken:
    def cycle(self, report: CycleReport) -> None:
        raise RuntimeError("a bug in a listener")

    def notice(self, notice: Notice) -> None:
        raise RuntimeError("a bug in a listener")


class Kept:
    def __init__(self) -> None:
        self.reports: list[CycleReport] = []
        self.notices: list[Notice] = []

    def cycle(self, report: CycleReport) -> None:
        self.reports.append(report)

    def notice(self, notice: Notice) -> None:
        self.notices.append(notice)


def report(events: tuple[Event, ...]) -> CycleReport:
    status = ControlStatus(writes={}, leases=(), output_leases=(), outputs={},
                           cycle=CycleStats(1.0).figures())
    return CycleReport(started=1.0, now=1.1, wall=1e9, points=None, decision=None,
                       status=status, events=events)


def test_a_cycles_events_go_with_its_report_and_a_broken_listener_stops_nobody() -> None:
    reporting = Reporting(host=None)  # type: ignore[arg-type]  # no listener is started
    kept = Kept()
    reporting.listeners[:] = [Broken(), kept]
    with heatd_events() as logged, reporting.gathering() as events:
        reporting.event("alarm", name="setpoint_out_of_bounds", role="valve.recovery")
        reporting.availability("cdu", False)  # not an event: it goes at once
        reporting.event("transition", layer="operator", change="lease")
    assert kept.notices == [Availability("cdu", False)]
    assert [e.kind for e in events] == ["alarm", "transition"]
    with heatd_events() as more:
        reporting.report(report(tuple(events)))
        reporting.event("reload", accepted=True)  # between cycles: at once
    assert kept.reports[0].events == (
        Event("alarm", {"name": "setpoint_out_of_bounds", "role": "valve.recovery"}),
        Event("transition", {"layer": "operator", "change": "lease"}))
    assert kept.notices[-1] == Event("reload", {"accepted": True})
    failures = [x for x in logged + more if x["event"] == "publishing failed"]
    assert [x["listener"] for x in failures] == ["Broken"] * 3
