"""Native against Python relabeling, per label set: ``python -m bench.relabel``.

Runs a realistic ``metric_relabel_configs`` list (drop by name, a labeldrop, a host
taken out of ``instance``, a constant label, a keep by name) over generated label sets
of eight labels, with each engine (``python``, ``re2``, ``native``): 20,000 series
once each (cold memos), the same 2,000 series ten times (what a scrape loop does),
and those with twelve more labels each. Prints the best of seven interleaved rounds,
in microseconds per ``apply``; nothing is asserted."""

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


def label_sets(count: int, extra: int = 0) -> list[dict[str, str]]:
    """``count`` label sets of eight labels, plus ``extra`` pod labels each."""
    return [
        {
            **{f"pod_label_{j}": f"value-{j}-{i % 13}" for j in range(extra)},
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
    wide: list[Mapping[str, str]] = list(label_sets(2_000, extra=12))
    engines: list[Engine] = ["python", "re2", "native"]
    runs = {"fresh": (cold, 1), "repeated": (warm, 10), "20 labels": (wide, 10)}
    best: dict[tuple[Engine, str], float] = {}
    for _ in range(ROUNDS):  # engines interleaved, so that a noisy moment hits them all
        for engine in engines:
            for run, (sets, rounds) in runs.items():
                took = per_apply(compile_rules(RULES, engine), sets, rounds)
                best[engine, run] = min(best.get((engine, run), took), took)
    print(f"{len(RULES)} rules; µs per apply, best of {ROUNDS} rounds")
    print("         " + "".join(f"{run:>12}" for run in runs))
    for engine in engines:
        print(f"{engine:>7}: " + "".join(f"{best[engine, run]:12.2f}" for run in runs))


if __name__ == "__main__":
    main()
