"""The plain copy of the params the step reads every cycle: the same fields with the same
values as their models, made once per params object and replaced when another one comes."""

from __future__ import annotations

import dataclasses

import pytest

from heatd.control.params import ControlParams, EnvelopeParams, OptimiserParams
from heatd.control.plain import PerObject, PlainEnvelope, PlainOptimiser, plain_params

TUNED = ControlParams.model_validate({
    "envelope": {"flow_min": 2.5, "blind_rise_k_per_s": 0.01, "supply_limit_c": 47.0},
    "optimiser": {"cool_kp": 0.3, "hp_cop": 4.1, "dt_max_s": 5.0},
})


@pytest.mark.parametrize(("model", "plain"), [
    (EnvelopeParams, PlainEnvelope),
    (OptimiserParams, PlainOptimiser),
])
def test_a_plain_copy_has_exactly_its_models_fields(model: type, plain: type) -> None:
    assert [f.name for f in dataclasses.fields(plain)] == list(model.model_fields)


@pytest.mark.parametrize("params", [ControlParams(), TUNED])
def test_a_plain_copy_holds_its_models_values(params: ControlParams) -> None:
    plain = plain_params.of(params)
    for model, copy in ((params.envelope, plain.envelope), (params.optimiser, plain.optimiser)):
        for name in type(model).model_fields:
            assert getattr(copy, name) is getattr(model, name), name
    assert plain.capacity_min is params.sequencer.capacity_min
    assert plain.capacity_max is params.sequencer.capacity_max


def test_the_copy_is_made_once_per_params_object() -> None:
    made: list[object] = []

    def make(key: object) -> object:
        made.append(key)
        return ("derived", key)

    derived: PerObject[object, object] = PerObject(make)
    a, b = TUNED, TUNED.model_copy(update={"optimiser": TUNED.optimiser.model_copy(
        update={"cool_kp": 0.5})})
    assert b != a
    assert derived.of(a) is derived.of(a) and made == [a]
    assert derived.of(b) == ("derived", b) and made == [a, b]  # an updated copy: its own values
    assert plain_params.of(b).optimiser.cool_kp == 0.5
    assert plain_params.of(a).optimiser.cool_kp == 0.3
