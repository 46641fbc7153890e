"""The macro and variable expansion reproduces Grafana's (no backend needed)."""

from __future__ import annotations

from tests.integration.grafana.expand import ALL, Range, expand, query_range_params

MULTI = {"type": "query", "multi": True, "includeAll": True, "allValue": ".+"}
HOUR = Range(1_700_000_000, 1_700_003_600)


def test_intervals_follow_the_scrape_interval_floor() -> None:
    # 3600 s / 1000 points = 3.6 s -> nice 5 s -> floored at the 15 s scrape interval.
    assert HOUR.macros()["__interval"] == "15s"
    assert HOUR.macros()["__rate_interval"] == "1m"  # max(15 + 15, 4 * 15) s
    assert HOUR.macros()["__range"] == "3600s"
    day = Range(1_700_000_000, 1_700_086_400)  # 86.4 s -> 1 m
    assert day.macros()["__interval"] == "1m"
    assert day.macros()["__rate_interval"] == "1m"  # max(60 + 15, 60) = 75 s, written 1m
    assert day.macros()["__rate_interval_ms"] == "75000"


def test_multi_values_become_an_escaped_alternation() -> None:
    variables = {"cluster": MULTI}
    text = 'up{cluster=~"$cluster"}'
    assert expand(text, HOUR, variables, {"cluster": ["alpha", "beta"]}) == (
        'up{cluster=~"(alpha|beta)"}'
    )
    assert expand(text, HOUR, variables, {"cluster": ["eu.1"]}) == r'up{cluster=~"eu\\.1"}'
    assert expand(text, HOUR, variables, {"cluster": [ALL]}) == 'up{cluster=~".+"}'
    no_all_value = {"cluster": {**MULTI, "allValue": None}}
    assert (
        expand(text, HOUR, no_all_value, {"cluster": [ALL]}, {"cluster": ["a", "b"]})
        == 'up{cluster=~"(a|b)"}'
    )
    assert expand("${cluster:regex}", HOUR, variables, {"cluster": ["a.b", "c"]}) == r"(a\.b|c)"
    assert expand("${cluster:pipe}", HOUR, variables, {"cluster": ["a", "c"]}) == "a|c"


def test_undefined_variables_are_an_error() -> None:
    try:
        expand("$nowhere", HOUR, {}, {})
    except KeyError as exc:
        assert "nowhere" in str(exc)
    else:
        raise AssertionError("expanded an undefined variable")


def test_query_range_is_aligned_to_the_step() -> None:
    params = query_range_params("up", Range(1_700_000_001, 1_700_003_601))
    assert params["step"] == "15.000"
    assert float(params["start"]) % 15 == 0 and float(params["end"]) % 15 == 0
    assert float(params["start"]) <= 1_700_000_001 and float(params["end"]) >= 1_700_003_601
