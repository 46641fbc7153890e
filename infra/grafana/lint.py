"""The rules every generated dashboard must pass; :func:`problems` names each breach.

Besides consistency (every datasource a provisioned one behind a variable, every
variable defined, unique ids, a grid that fits 24 columns without overlaps), the
rules follow Grafana's dashboard linter: a ``datasource`` template variable, job and
instance matchers on every PromQL selector of a dashboard that has ``job`` and
``instance`` variables (the Kubernetes dashboard has none, as the Kubernetes mixin's
have none: its panels mix cAdvisor's per-node jobs with kube-state-metrics', and a
choice of either would empty the others), ``$__rate_interval`` in every rate, a
title on every panel and a unit on every graph. And one of ours: no cluster is ever
written into a query; it always comes from ``$cluster``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .datasources import DATASOURCES

__all__ = ["BUILTINS", "problems", "promql_selectors", "variables_used"]

Json = dict[str, Any]

#: Variables Grafana itself defines.
BUILTINS = frozenset(
    {
        "__interval",
        "__interval_ms",
        "__rate_interval",
        "__rate_interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__auto",
        "__from",
        "__to",
        "__all",
        "__dashboard",
        "__user",
        "__org",
        "__name",
        "__value",
        "__field",
        "__series",
        "__data",
        "__timeFilter",
        "__timezone",
        "__url_time_range",
        "__url",
    }
)
_VAR = re.compile(r"\$\{(\w+)(?:[:.][^}]*)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_RANGE = re.compile(r"\[[^\]]*\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[a-zA-Z_:][\w:]*")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
    }
)
_RATES = re.compile(r"\b(rate|irate|increase)\s*\(")
_CLUSTER_IN_QUERY = re.compile(
    r"""(?<![\w.])(cluster|k8s\.cluster\.name)\s*(=~|!~|!=|=|:)\s*"?([^"\s,})]*)"?"""
)
_CLUSTER_VALUE = re.compile(r"\$(\{)?cluster(?(1)(:\w+)?\})")
_UNIT_PANELS = frozenset({"timeseries", "stat", "gauge", "bargauge"})
_PLUGIN_OF = {d.uid: d.type for d in DATASOURCES}


def variables_used(text: str) -> set[str]:
    """Names of the variables ``text`` refers to, in any of Grafana's three syntaxes."""
    return {next(g for g in m.groups() if g) for m in _VAR.finditer(text)}


def promql_selectors(expr: str) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
    """The ``name{…}`` selectors of ``expr`` with their matchers (name -> value), and
    the metric names written without braces (which no rule can narrow)."""
    selectors = [
        (m.group(1), {k: v for k, _, v in _MATCHER.findall(m.group(2))})
        for m in _SELECTOR.finditer(expr)
    ]
    rest = _SELECTOR.sub(" ", expr)
    rest = _STRING.sub(" ", _RANGE.sub(" ", rest))
    rest = _GROUPING.sub(" ", rest)
    bare = []
    for m in _IDENT.finditer(rest):
        following = rest[m.end() :].lstrip()[:1]
        if following != "(" and m.group(0) not in _KEYWORDS:
            bare.append(m.group(0))
    return selectors, bare


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _query_text(target: Json) -> str:
    parts = [target.get(k) for k in ("expr", "query", "tags")]
    return " ".join(p for p in parts if isinstance(p, str))


def _check_promql(
    expr: str, unscraped: frozenset[str], scope: tuple[str, ...] = ("cluster", "job", "instance")
) -> Iterator[str]:
    selectors, bare = promql_selectors(expr)
    for name in bare:
        yield f"metric {name} has no matchers"
    for name, matchers in selectors:
        wanted = ("cluster",) if name in unscraped else scope
        for label in wanted:
            if matchers.get(label) != f"${label}":
                yield f'{name} lacks {label}=~"${label}"'
    for m in _RATES.finditer(expr):
        depth, i = 1, m.end()
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        ranges = _RANGE.findall(expr[m.end() : i])
        if ranges and ranges[-1] != "[$__rate_interval]":
            yield f"{m.group(1)}() over {ranges[-1]}, not [$__rate_interval]"


def _overlaps(a: Json, b: Json) -> bool:
    return bool(
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def problems(dash: Json, unscraped: frozenset[str] = frozenset()) -> list[str]:
    """Every rule ``dash`` breaks, as ``"<uid>: <what>"`` lines (empty: it passes)."""
    out: list[str] = []
    uid = dash.get("uid", "?")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds_vars = {n: v for n, v in variables.items() if v["type"] == "datasource"}
    say = out.append

    if "datasource" not in ds_vars:
        say(f"{uid}: no datasource template variable")
    for name, v in ds_vars.items():
        default = v["current"]["value"]
        if _PLUGIN_OF.get(default) != v["query"]:
            say(f"{uid}: ${name} defaults to {default!r}, not a provisioned {v['query']}")
        if v["query"] not in set(_PLUGIN_OF.values()):
            say(f"{uid}: ${name} lists type {v['query']}, which nothing provisions")

    def datasource_ok(where: str, ref: Any) -> None:
        if not isinstance(ref, dict):
            say(f"{uid}: {where}: datasource is not a {{type, uid}} reference")
            return
        names = variables_used(str(ref.get("uid", "")))
        if len(names) != 1 or next(iter(names)) not in ds_vars:
            say(f"{uid}: {where}: datasource uid {ref.get('uid')!r} is not a datasource variable")
            return
        var = ds_vars[next(iter(names))]
        if ref.get("type") != var["query"]:
            say(f"{uid}: {where}: type {ref.get('type')} but ${var['name']} is {var['query']}")

    scope = ("cluster", *(n for n in ("job", "instance") if n in variables))
    cluster = variables.get("cluster")
    if cluster is None:
        say(f"{uid}: no cluster variable")
    elif not (cluster.get("multi") and cluster.get("includeAll")):
        say(f"{uid}: the cluster variable must be multi-select with All")
    for name, v in variables.items():
        if v["type"] == "query":
            datasource_ok(f"variable {name}", v.get("datasource"))

    used: set[str] = set()
    for text in _strings([dash["panels"], [v for v in variables.values()]]):
        used |= variables_used(text)
    for name in sorted(used - set(variables) - BUILTINS):
        say(f"{uid}: ${name} is used but not defined")

    ids = [p.get("id") for p in dash["panels"]]
    if len(ids) != len(set(ids)) or None in ids:
        say(f"{uid}: panel ids are missing or repeated: {ids}")
    titles = [p.get("title", "") for p in dash["panels"]]
    for title in {t for t in titles if titles.count(t) > 1}:
        say(f"{uid}: title {title!r} is repeated")

    grids: list[tuple[str, Json]] = []
    for panel in dash["panels"]:
        title = panel.get("title", "")
        where = f"panel {panel.get('id')} {title!r}"
        g = panel.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            say(f"{uid}: {where}: incomplete gridPos")
        elif g["x"] < 0 or g["y"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
            say(f"{uid}: {where}: gridPos {g} is outside 24 columns")
        else:
            for other_where, other in grids:
                if _overlaps(g, other):
                    say(f"{uid}: {where} overlaps {other_where}")
            grids.append((where, g))
        if not title.strip():
            say(f"{uid}: {where}: no title")
        if panel["type"] == "row":
            continue
        if panel["type"] in _UNIT_PANELS and not panel.get("fieldConfig", {}).get(
            "defaults", {}
        ).get("unit"):
            say(f"{uid}: {where}: no unit")
        datasource_ok(where, panel.get("datasource"))
        if not panel.get("targets"):
            say(f"{uid}: {where}: no queries")
        for target in panel.get("targets", []):
            ref = target.get("refId")
            datasource_ok(f"{where} query {ref}", target.get("datasource"))
            text = _query_text(target)
            for m in _CLUSTER_IN_QUERY.finditer(text):
                if not _CLUSTER_VALUE.fullmatch(m.group(3)):
                    say(f"{uid}: {where} query {ref}: cluster written as {m.group(0)!r}")
            if target.get("datasource", {}).get("type") == "prometheus":
                for problem in _check_promql(target.get("expr", ""), unscraped, scope):
                    say(f"{uid}: {where} query {ref}: {problem}")
    return out
