"""The coolant supply temperature estimated from the return, the IT load and the flow.

A loop that only takes heat from the racks can never supply warmer than it returns
(the heat pump's evaporator and the dry cooler only take heat out), and the racks warm
the flow by ``IT / (flow * cp)``. So while the supply transmitter is lost, the good
return, IT power and flow say where the supply is: ``return - spread``, the spread
scaled from the one the loop showed while the supply was measured (its ratio to
``IT / flow``, learned on the loop itself, so no unit or heat capacity is commissioned).
Air warmer than the return would let the dry cooler add heat: with ``outdoor.temp`` at
or above the return, or bound but not known, there is no estimate (a site without an
outdoor transmitter is taken to have told, by commissioning, that its air never is).
The estimate carries a margin (``envelope.estimate_margin_k``), takes the IT load no
higher than its recent mean (a load step reaches the return only after the racks' mass),
and is never warmer than the return itself: it errs on the warm side.

Only supply readings that changed are learned from, so a transmitter stuck on one value
teaches nothing before it is declared frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatd.control import roles as R
from heatd.control.minmax import max2, min2
from heatd.control.plain import PlainEnvelope
from heatd.control.validate import Inputs


@dataclass(frozen=True, slots=True)
class EstimateState:
    """What the loop taught while its supply was measured."""

    ratio: float | None = None
    """Spread over ``IT / flow`` (flow 1 where the site binds none), smoothed."""
    learned_s: float = 0.0
    """Seconds of supply readings the ratio was learned from."""
    supply: float | None = None
    """The supply reading last learned from, and when."""
    supply_at: float = 0.0
    it: float | None = None
    """The IT load, smoothed over ``envelope.estimate_tau_s``, and when."""
    it_at: float = 0.0
    used: bool = False
    """Whether the last cycle ran on the estimate."""


NO_ESTIMATE = EstimateState()
"""Nothing learned yet."""

_COLD = float("-inf")
_SPREAD_MIN_K = 1.0
"""A smaller spread between return and supply is mostly the two transmitters' noise."""


def _flow(inputs: Inputs) -> float | None:
    """The coolant flow, 1 where the site binds none (constant flow); None if unknown."""
    flow = inputs.values.get(R.COOLANT_FLOW)
    if flow is None:
        return None if R.COOLANT_FLOW in inputs.invalid else 1.0
    return flow if flow > 0.0 else None


def supply_estimate(inputs: Inputs, state: EstimateState, p: PlainEnvelope,
                    now: float) -> tuple[float | None, EstimateState]:
    """This cycle's supply estimate (None while the supply is measured, or where the
    loop cannot say), and what the loop taught this cycle."""
    values = inputs.values
    ret, it, supply = (values.get(R.COOLANT_RETURN_TEMP), values.get(R.IT_POWER),
                       values.get(R.COOLANT_SUPPLY_TEMP))
    flow, tau = _flow(inputs), p.estimate_tau_s
    it_mean, it_at = state.it, state.it_at
    if it is not None:
        it_mean = it if it_mean is None else it_mean + (it - it_mean) * _weight(now - it_at, tau)
        it_at = now
    ratio, learned_s, last, last_at = state.ratio, state.learned_s, state.supply, state.supply_at
    est: float | None = None
    if supply is not None:
        if (ret is not None and it is not None and flow is not None and it > 0.0
                and ret - supply >= _SPREAD_MIN_K and supply != last):
            sample = (ret - supply) * flow / it
            gap = min2(max2(now - last_at, 0.0), 0.1 * tau)  # one reading weighs little
            ratio = sample if ratio is None else ratio + (sample - ratio) * gap / tau
            learned_s, last, last_at = learned_s + gap, supply, now
    elif (p.supply_estimate and ret is not None and it is not None and it_mean is not None
          and flow is not None and ratio is not None and learned_s >= tau
          and R.OUTDOOR_TEMP not in inputs.invalid
          and values.get(R.OUTDOOR_TEMP, _COLD) < ret):
        est = min2(ret, ret - ratio * min2(it, it_mean) / flow + p.estimate_margin_k)
    return est, EstimateState(ratio, learned_s, last, last_at, it_mean, it_at, est is not None)


def _weight(dt: float, tau: float) -> float:
    """A first-order filter's step weight over ``dt``."""
    return min2(1.0, max2(dt, 0.0) / tau)
