"""Every registered function proves the same contract (see STYLE.md)."""

from __future__ import annotations

import inspect

import pytest
import yaml

from functions import registry
from workers.function import FunctionSpec

NAMES = registry.names()


@pytest.fixture(params=NAMES)
def spec(request: pytest.FixtureRequest) -> FunctionSpec:
    return registry.load(request.param)


def test_registry_is_explicit_and_complete() -> None:
    assert NAMES, "no functions registered"
    for name in NAMES:
        assert registry.load(name).name == name


def test_unknown_function_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="prometheus_remote_write"):
        registry.load("nope")


def test_example_config_round_trips(spec: FunctionSpec) -> None:
    parsed = spec.config_model.model_validate(yaml.safe_load(spec.example))
    dumped = parsed.model_dump(mode="json")
    assert spec.config_model.model_validate(dumped) == parsed


def test_config_is_frozen_and_strict(spec: FunctionSpec) -> None:
    assert spec.config_model.model_config.get("frozen") is True
    assert spec.config_model.model_config.get("extra") == "forbid"
    with pytest.raises(ValueError, match="Extra inputs"):
        spec.config_model.model_validate({**yaml.safe_load(spec.example), "surprise": 1})


def test_every_config_field_is_described(spec: FunctionSpec) -> None:
    for name, field in spec.config_model.model_fields.items():
        assert field.description, f"{spec.name}.{name} has no description"


@pytest.mark.parametrize(("status", "headers", "kind", "delay"), [
    (200, {}, "ok", None),
    (204, {}, "ok", None),
    (429, {"retry-after": "7"}, "retry", 7.0),
    (429, {}, "retry", None),
    (500, {}, "retry", None),
    (503, {"retry-after": "2"}, "retry", 2.0),
    (400, {}, "permanent", None),
    (401, {}, "permanent", None),
    (404, {}, "permanent", None),
    (413, {}, "permanent", None),
])
def test_classify(spec: FunctionSpec, status: int, headers: dict[str, str], kind: str,
                  delay: float | None) -> None:
    if spec.kind != "sink":
        return  # transforms talk to Kafka only; the runtime classifies that
    module = inspect.getmodule(spec.create)
    assert module is not None
    classify = __import__(f"{module.__name__}.classify", fromlist=["classify"]).classify
    outcome = classify(status, headers, "body text")
    assert (outcome.kind, outcome.delay) == (kind, delay)
    if kind != "ok":
        assert str(status) in outcome.reason
