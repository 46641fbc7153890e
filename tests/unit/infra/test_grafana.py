"""The generated Grafana files are current and every dashboard passes the lint rules;
each rule is shown to catch the breach it names; every ferryman metric a dashboard
reads is one the code declares."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.grafana import generate, lint
from infra.grafana.dashboards import DASHBOARDS, UNSCRAPED
from infra.grafana.datasources import DATASOURCES

ROOT = Path(__file__).resolve().parents[3]


def test_generated_files_are_current() -> None:
    assert generate.stale() == [], "run: python -m infra.grafana.generate"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_passes_the_rules(name: str) -> None:
    assert lint.problems(DASHBOARDS[name](), UNSCRAPED) == []


def test_the_readme_lists_every_dashboard_and_panel() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Dashboards\n") :]
    section = section[: section.index("\n## ", 5)]
    for name, build in DASHBOARDS.items():
        assert f"`dashboards/{name}`" in section
        for panel in build()["panels"]:
            if panel["type"] != "row":
                assert f"- {panel['title']} — " in section, panel["title"]


def test_provisioning_names_each_uid_once_and_links_to_real_datasources() -> None:
    body = yaml.safe_load((generate.HERE / "provisioning/datasources/ferryman.yaml").read_text())
    uids = [d["uid"] for d in body["datasources"]]
    assert len(uids) == len(set(uids))
    assert sum(d["isDefault"] for d in body["datasources"]) == 1
    linked = re.findall(r"'?datasourceUid'?: '?([\w-]+)", json.dumps(body).replace('"', "'"))
    assert linked and set(linked) <= set(uids)
    types = {d["type"] for d in body["datasources"]}
    assert {
        "prometheus",
        "elasticsearch",
        "loki",
        "victoriametrics-logs-datasource",
        "jaeger",
    } <= types


def test_every_log_datasource_turns_a_trace_id_into_a_link() -> None:
    for d in DATASOURCES:
        if d.type in ("loki", "victoriametrics-logs-datasource"):
            fields = d.json_data["derivedFields"]
            assert any(f["datasourceUid"] == "jaeger" for f in fields), d.uid
            regex = next(f["matcherRegex"] for f in fields if f["matcherType"] == "regex")
            line = 'level=info trace_id=4bf92f3577b34da6a3ce929d0e0e4736 msg="GET /"'
            match = re.search(regex, line)
            assert match and match.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
            assert re.search(regex, '{"trace_id": "4bf92f3577b34da6"}')
    es = next(d for d in DATASOURCES if d.uid == "elasticsearch-logs")
    assert es.json_data["timeField"] == "@timestamp"
    assert es.json_data["dataLinks"][0]["field"] == "fields.trace_id"


def _declared_metrics() -> set[str]:
    names: set[str] = set()
    for folder in ("ferryman", "edge", "workers", "functions"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r'"(ferryman_[a-z_]+)"', path.read_text()))
    return names


def test_every_ferryman_metric_on_a_dashboard_is_declared_in_code() -> None:
    declared = _declared_metrics()
    used: set[str] = set()
    for build in DASHBOARDS.values():
        for panel in build()["panels"]:
            for target in panel.get("targets", []):
                used |= set(re.findall(r"\b(ferryman_[a-z_]+)\{", target.get("expr", "")))
    used = {re.sub(r"_bucket$", "", n) for n in used}
    assert used, "no ferryman metric on any dashboard"
    assert used - declared == set()


# --- each rule catches its breach -------------------------------------------------------


def _health() -> dict[str, Any]:
    return copy.deepcopy(DASHBOARDS["ferryman.json"]())


def _first_prom(dash: dict[str, Any]) -> dict[str, Any]:
    panel = next(p for p in dash["panels"] if p["type"] == "timeseries")
    target: dict[str, Any] = panel["targets"][0]
    return target


def _breach(change: Any) -> list[str]:
    dash = _health()
    change(dash)
    return lint.problems(dash, UNSCRAPED)


def test_a_hard_coded_cluster_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        t = _first_prom(d)
        t["expr"] = t["expr"].replace('cluster=~"$cluster"', 'cluster="alpha"')

    assert any("cluster written as" in p for p in _breach(change))


def test_an_undefined_variable_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        _first_prom(d)["expr"] += " * on () group_left vector($nowhere)"

    assert any("$nowhere is used but not defined" in p for p in _breach(change))


def test_a_fixed_datasource_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        _first_prom(d)["datasource"] = {"type": "prometheus", "uid": "prometheus"}

    assert any("is not a datasource variable" in p for p in _breach(change))


def test_a_missing_datasource_variable_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "datasource"]

    found = _breach(change)
    assert any("no datasource template variable" in p for p in found)


def test_a_single_valued_cluster_variable_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        next(v for v in d["templating"]["list"] if v["name"] == "cluster")["multi"] = False

    assert any("multi-select with All" in p for p in _breach(change))


def test_repeated_ids_overlaps_and_the_24_column_grid_are_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        d["panels"][2]["id"] = d["panels"][1]["id"]
        d["panels"][3]["gridPos"] = dict(d["panels"][2]["gridPos"])
        d["panels"][4]["gridPos"]["x"] = 20

    found = _breach(change)
    assert any("ids are missing or repeated" in p for p in found)
    assert any("overlaps" in p for p in found)
    assert any("outside 24 columns" in p for p in found)


def test_a_rate_without_rate_interval_is_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        t = _first_prom(d)
        t["expr"] = t["expr"].replace("[$__rate_interval]", "[5m]")

    assert any("rate() over [5m], not [$__rate_interval]" in p for p in _breach(change))


def test_missing_job_or_instance_matchers_and_bare_metrics_are_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        t = _first_prom(d)
        t["expr"] = t["expr"].replace(', job=~"$job"', "") + " + on () group_left up"

    found = _breach(change)
    assert any('lacks job=~"$job"' in p for p in found)
    assert any("metric up has no matchers" in p for p in found)


def test_missing_units_and_titles_are_caught() -> None:
    def change(d: dict[str, Any]) -> None:
        panel = next(p for p in d["panels"] if p["type"] == "timeseries")
        del panel["fieldConfig"]["defaults"]["unit"]
        panel["title"] = " "

    found = _breach(change)
    assert any("no unit" in p for p in found)
    assert any("no title" in p for p in found)


def test_promql_selectors_are_read_with_their_matchers() -> None:
    selectors, bare = lint.promql_selectors(
        'sum by (cluster, le) (rate(a_bucket{cluster=~"$cluster", x!="y"}[$__rate_interval]))'
        " / on (cluster) group_left count(b) > 0"
    )
    assert selectors == [("a_bucket", {"cluster": "$cluster", "x": "y"})]
    assert bare == ["b"]
