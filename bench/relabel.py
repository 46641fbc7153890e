"""Native against Python relabeling, per label set: ``python -m bench.relabel``.

Runs a realistic ``metric_relabel_configs`` list (drop by name, a labeldrop, a host
taken out of ``instance``, a constant label, a keep by name) over generated label sets
of eight labels, with each engine (``python``, ``re2``, ``native``), twice: 20,000 series once each
(cold memos), and the same 2,000 series ten times (what a scrape loop does). Prints
the best of seven interleaved rounds, in microseconds per ``apply``; nothing is
asserted."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ferryman.prom.relabel import Engine, RelabelConfig, Relabeler, compile_rules

RULES = [
    RelabelConfig(
        action="drop", source_labels=("__name__",), regex="go_gc_.*|process_(open|max)_fds"
    ),
    RelabelConfig(action="labeldrop", regex="pod_template_hash|controller_revision_hash"),
    RelabelConfig(
        source_labels=("instance",), regex="([^:]+):\\d+", target_label="host", replacement="$1"
    ),
    RelabelConfig(target_label="cluster", replacement="eu-west-1"),
    RelabelConfig(action="keep", source_labels=("__name__",), regex="(http|node|go)_.+|up"),
]
ROUNDS = 7
NAMES = ["http_requests_total", "node_cpu_seconds_total", "go_gc_duration_seconds", "up"]


def label_sets(count: int) -> list[dict[str, str]]:
    return [
        {
            "__name__": NAMES[i % len(NAMES)],
            "instance": f"10.0.{i % 250}.{i % 7}:{8000 + i % 50}",
            "job": "api",
            "method": ("GET", "POST")[i % 2],
            "code": str(200 + i % 5),
            "handler": f"/v1/items/{i % 300}",
            "pod": f"api-{i % 97}",
            "pod_template_hash": f"{i:08x}",
        }
        for i in range(count)
    ]


def per_apply(relabeler: Relabeler, sets: list[Mapping[str, str]], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        for labels in sets:
            relabeler.apply(labels)
    return (time.perf_counter() - started) / (rounds * len(sets)) * 1e6


def main() -> None:
    cold: list[Mapping[str, str]] = list(label_sets(20_000))
    warm: list[Mapping[str, str]] = list(label_sets(2_000))
    engines: list[Engine] = ["python", "re2", "native"]
    best: dict[tuple[Engine, str], float] = {}
    for _ in range(ROUNDS):  # engines interleaved, so that a noisy moment hits them all
        for engine in engines:
            fresh = per_apply(compile_rules(RULES, engine), cold, 1)
            relabeler = compile_rules(RULES, engine)
            repeated = per_apply(relabeler, warm, 10)
            for key, value in (((engine, "fresh"), fresh), ((engine, "repeated"), repeated)):
                best[key] = min(best.get(key, value), value)
    print(f"{len(RULES)} rules, 8 labels per set; µs per apply, best of {ROUNDS} rounds")
    for engine in engines:
        print(
            f"{engine:>7}: {best[engine, 'fresh']:5.2f} fresh series, "
            f"{best[engine, 'repeated']:5.2f} repeated series"
        )


if __name__ == "__main__":
    main()
