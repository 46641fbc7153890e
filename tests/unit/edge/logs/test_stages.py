"""Pipeline stages over one file: each stage, and the positions rule."""

from __future__ import annotations

import json
import time
from typing import Any

from edge.logs.stages import FilePipeline, StageConfig, StageMetrics, build_stages
from edge.logs.tailer import Line
from ferryman.telemetry import Registry

IDENTITY = (1, 100)
NOW_NS = 1_700_000_000_000_000_000


class Run:
    """One file's pipeline fed with text lines at increasing offsets."""

    def __init__(
        self,
        stages: list[dict[str, Any]],
        *,
        max_line: int = 256 * 1024,
        start: int = 0,
        identity: tuple[int, int] = IDENTITY,
    ) -> None:
        registry = Registry()
        self.errors = registry.counter("ferryman_errors_total", "", ["error_type", "stage"])
        self.dropped = registry.counter("ferryman_lines_dropped_total", "", ["reason"])
        configs = [StageConfig.model_validate(stage) for stage in stages]
        self.pipeline = FilePipeline(
            build_stages(configs, StageMetrics(self.errors, self.dropped), max_line),
            identity,
            start,
        )
        self.offset = start
        self.identity = identity
        self.labels = {"job": "test", "filename": "/var/log/x.log"}
        self.now = 0.0

    def lines(self, *texts: str, identity: tuple[int, int] | None = None) -> list[Line]:
        if identity is not None and identity != self.identity:
            self.identity, self.offset = identity, 0
        out = []
        for text in texts:
            self.offset += len(text.encode()) + 1
            out.append(Line(text, self.offset, *self.identity, False))
        return out

    def feed(
        self, *texts: str, after: float = 0.0, identity: tuple[int, int] | None = None
    ) -> list[Any]:
        """Records that came out of feeding ``texts`` ``after`` seconds later."""
        self.now += after
        lines = self.lines(*texts, identity=identity)
        return self.pipeline.process(
            lines, self.labels, [NOW_NS + i for i in range(len(lines))], self.now
        )

    def tick(self, after: float) -> list[Any]:
        return self.feed(after=after)

    def texts(self, *texts: str, after: float = 0.0) -> list[str]:
        return [record.line for record in self.feed(*texts, after=after)]

    def safe(self) -> int:
        return self.pipeline.safe_offsets()[self.identity]


def offset_after(*texts: str) -> int:
    return sum(len(text.encode()) + 1 for text in texts)


T0 = "2024-05-01T10:00:00.123456789Z"
T0_NS = 1_714_557_600_123_456_789


def cri(stream: str, flag: str, content: str, stamp: str = T0) -> str:
    return f"{stamp} {stream} {flag} {content}"


# ---- cri ---------------------------------------------------------------------------


def test_cri_joins_partial_lines_per_stream_and_sets_time_and_stream_label() -> None:
    run = Run([{"cri": {}}])
    assert run.feed(cri("stdout", "P", "hello "), cri("stderr", "F", "oops")) != []
    out = run.feed(cri("stdout", "P", "big "), cri("stdout", "F", "world"))
    assert [r.line for r in out] == ["hello big world"]
    record = out[0]
    assert record.timestamp_ns == T0_NS
    assert record.labels == {**run.labels, "stream": "stdout"}
    assert record.extracted["content"] == "hello big world"
    assert record.extracted["flags"] == "P"


def test_cri_complete_lines_and_empty_content() -> None:
    run = Run([{"cri": None}])
    out = run.feed(cri("stderr", "F", "one"), f"{T0} stdout F", cri("stdout", "F", ""))
    assert [(r.line, r.labels["stream"]) for r in out] == [
        ("one", "stderr"),
        ("", "stdout"),
        ("", "stdout"),
    ]


def test_cri_bad_line_passes_through_and_is_counted() -> None:
    run = Run([{"cri": {}}])
    out = run.feed("not a cri line", f"{T0} stdboth F x", cri("stdout", "F", "ok"))
    assert [r.line for r in out] == ["not a cri line", f"{T0} stdboth F x", "ok"]
    assert "stream" not in out[0].labels
    assert out[0].timestamp_ns == NOW_NS
    assert run.errors.value(error_type="unparsable_cri", stage="cri") == 2


def test_cri_partial_bounds_ship_the_joined_part_and_lose_nothing() -> None:
    run = Run([{"cri": {"max_partial_lines": 3}}])
    out = run.texts(*(cri("stdout", "P", f"{i}") for i in range(7)), cri("stdout", "F", "end"))
    assert out == ["012", "345", "6end"]
    assert run.errors.value(error_type="partial_line_limit", stage="cri") == 2
    sized = Run([{"cri": {"max_partial_line_size": 10}}])
    assert sized.texts(
        cri("stdout", "P", "aaaaaa"), cri("stdout", "P", "bbbbbb"), cri("stdout", "F", "c")
    ) == ["aaaaaa", "bbbbbbc"]


def test_cri_partial_bound_defaults_to_max_line_bytes() -> None:
    run = Run([{"cri": {}}], max_line=8)
    assert run.texts(
        cri("stdout", "P", "12345"), cri("stdout", "P", "6789"), cri("stdout", "F", "0")
    ) == ["12345", "67890"]


# ---- docker ------------------------------------------------------------------------


def docker(log: str, stream: str = "stdout", stamp: str = "2024-05-01T10:00:00.5Z") -> str:
    return json.dumps({"log": log, "stream": stream, "time": stamp})


def test_docker_strips_newline_joins_split_lines_and_sets_stream() -> None:
    run = Run([{"docker": {}}])
    out = run.feed(
        docker("first\n"), docker("long ", "stderr"), docker("one\n"), docker("line\n", "stderr")
    )
    assert [(r.line, r.labels["stream"]) for r in out] == [
        ("first", "stdout"),
        ("one", "stdout"),
        ("long line", "stderr"),
    ]
    assert out[0].timestamp_ns == 1_714_557_600_500_000_000
    assert out[0].extracted["output"] == "first"


def test_docker_bad_line_passes_through_counted() -> None:
    run = Run([{"docker": {}}])
    assert run.texts("{oops", '{"log": 1}', docker("ok\n")) == ["{oops", '{"log": 1}', "ok"]
    assert run.errors.value(error_type="unparsable_docker", stage="docker") == 2


# ---- json / logfmt / regex / output -----------------------------------------------


def test_json_expressions_source_and_output() -> None:
    run = Run(
        [
            {
                "json": {
                    "expressions": {
                        "level": None,
                        "msg": "payload.message",
                        "first": "items[0]",
                        "inner": "",
                    }
                }
            },
            {"json": {"expressions": {"deep": "x"}, "source": "inner"}},
            {"labels": {"level": None}},
            {"output": {"source": "msg"}},
        ]
    )
    line = (
        '{"level": "warn", "payload": {"message": "disk full"}, "items": [7], '
        '"inner": "{\\"x\\": 1}"}'
    )
    (record,) = run.feed(line)
    assert record.line == "disk full"
    assert record.labels["level"] == "warn"
    assert record.extracted["first"] == 7
    assert record.extracted["deep"] == 1


def test_json_bad_line_passes_unchanged_and_counted_or_dropped() -> None:
    run = Run([{"json": {"expressions": {"level": ""}}}, {"labels": {"level": ""}}])
    (record,) = run.feed("plain text")
    assert record.line == "plain text" and "level" not in record.labels
    assert run.errors.value(error_type="unparsable_json", stage="json") == 1
    dropping = Run([{"json": {"expressions": {"level": ""}, "drop_malformed": True}}])
    assert dropping.texts("plain", '{"level": "x"}') == ['{"level": "x"}']
    assert dropping.dropped.value(reason="malformed_json") == 1


def test_logfmt_mapping_and_source() -> None:
    run = Run(
        [
            {"regex": {"expression": r"^(?P<time>\S+) (?<rest>.*)$"}},
            {"logfmt": {"mapping": {"lvl": "level", "user": None}, "source": "rest"}},
            {"labels": {"level": "lvl"}},
            {"output": {"source": "user"}},
        ]
    )
    (record,) = run.feed('2024-05-01T10:00:00Z level=error user="jo doe" msg=x')
    assert record.labels["level"] == "error"
    assert record.line == "jo doe"
    assert record.extracted["time"] == "2024-05-01T10:00:00Z"


def test_regex_no_match_is_counted_and_line_kept() -> None:
    run = Run([{"regex": {"expression": r"id=(?P<id>\d+)"}}, {"labels": {"id": ""}}])
    out = run.feed("id=42 ok", "nothing here")
    assert [r.labels.get("id") for r in out] == ["42", None]
    assert run.errors.value(error_type="regex_no_match", stage="regex") == 1


def test_output_missing_source_keeps_line() -> None:
    run = Run([{"output": {"source": "nope"}}])
    assert run.texts("unchanged") == ["unchanged"]


# ---- labels ------------------------------------------------------------------------


def test_labels_static_labels_labeldrop_labelallow() -> None:
    run = Run(
        [
            {"regex": {"expression": r"(?P<level>\w+) (?P<code>\d+)"}},
            {"labels": {"level": "", "status": "code", "absent": ""}},
            {"static_labels": {"team": "shop", "filename": ""}},
            {"labeldrop": ["job"]},
        ]
    )
    (record,) = run.feed("error 503")
    assert record.labels == {"level": "error", "status": "503", "team": "shop"}
    empty = Run([{"regex": {"expression": r"level=(?P<level>\w*)"}}, {"labels": {"level": ""}}])
    assert "level" not in empty.feed("level= x")[0].labels
    assert run.labels == {"job": "test", "filename": "/var/log/x.log"}  # not mutated
    allow = Run([{"static_labels": {"a": "1", "b": "2"}}, {"labelallow": ["a", "job"]}])
    assert allow.feed("x")[0].labels == {"a": "1", "job": "test"}


def test_unchanged_labels_stay_the_files_mapping() -> None:
    run = Run([{"json": {"expressions": {"a": ""}}}])
    (record,) = run.feed('{"a": 1}')
    assert record.labels is run.labels


# ---- timestamp ---------------------------------------------------------------------


def test_timestamp_formats_fallbacks_and_location() -> None:
    run = Run(
        [
            {"regex": {"expression": r"^(?P<ts>[^|]+)\|"}},
            {
                "timestamp": {
                    "source": "ts",
                    "format": "2006-01-02 15:04:05.000",
                    "fallback_formats": ["UnixMs", "RFC3339"],
                    "location": "Europe/Berlin",
                }
            },
        ]
    )
    out = run.feed("2024-05-01 12:00:00.250|a", "1714557600250|b", "2024-05-01T10:00:00.25Z|c")
    assert [r.timestamp_ns for r in out] == [1_714_557_600_250_000_000] * 3


def test_timestamp_failure_fudge_and_skip() -> None:
    stages: list[dict[str, Any]] = [{"regex": {"expression": r"^(?P<ts>\S+)"}}]
    fudge = Run([*stages, {"timestamp": {"source": "ts", "format": "RFC3339"}}])
    out = fudge.feed("bad-1", "2024-05-01T10:00:00Z ok", "bad-2")
    assert [r.timestamp_ns for r in out] == [
        NOW_NS,
        1_714_557_600_000_000_000,
        1_714_557_600_000_000_001,
    ]
    assert fudge.errors.value(error_type="unparsable_timestamp", stage="timestamp") == 2
    skip = Run(
        [*stages, {"timestamp": {"source": "ts", "format": "RFC3339", "action_on_failure": "skip"}}]
    )
    out = skip.feed("2024-05-01T10:00:00Z ok", "bad")
    assert out[1].timestamp_ns == NOW_NS + 1


# ---- drop --------------------------------------------------------------------------


def test_drop_variants_and_reason_counter() -> None:
    run = Run(
        [
            {"logfmt": {"mapping": {"level": "", "app": ""}}},
            {"drop": {"source": "level", "value": "debug", "drop_counter_reason": "debug"}},
            {"drop": {"expression": "healthz"}},
            {"drop": {"source": "app", "expression": "^canary"}},
            {"drop": {"source": ["level", "app"], "value": "info;noisy"}},
            {"drop": {"longer_than": 20, "drop_counter_reason": "too_long"}},
        ]
    )
    kept = run.texts(
        "level=debug a=1",
        "GET /healthz",
        "app=canary-3",
        "level=info app=noisy",
        "level=info app=shop",
        "level=info app=shop x=1234567890",
    )
    assert kept == ["level=info app=shop"]
    assert run.dropped.value(reason="debug") == 1
    assert run.dropped.value(reason="drop_stage") == 3
    assert run.dropped.value(reason="too_long") == 1


def test_drop_source_alone_drops_when_present_and_conditions_combine() -> None:
    run = Run([{"logfmt": {"mapping": {"secret": ""}}}, {"drop": {"source": "secret"}}])
    assert run.texts("a=1", "secret=x") == ["a=1"]
    both = Run([{"drop": {"expression": "x", "longer_than": 3}}])
    assert both.texts("xx", "xxxx", "yyyy") == ["xx", "yyyy"]


def test_drop_older_than() -> None:
    run = Run(
        [
            {"regex": {"expression": r"^(?P<ts>\S+)"}},
            {"timestamp": {"source": "ts", "format": "Unix"}},
            {"drop": {"older_than": "1h", "drop_counter_reason": "old"}},
        ]
    )
    fresh = str(int(time.time()) - 60)
    assert run.texts("1000 ancient", f"{fresh} fresh") == [f"{fresh} fresh"]
    assert run.dropped.value(reason="old") == 1


# ---- multiline ---------------------------------------------------------------------

JAVA = [
    "2024-05-01 10:00:00 ERROR boom",
    "java.lang.IllegalStateException: bad",
    "\tat com.shop.Cart.add(Cart.java:42)",
    "\tat com.shop.Api.post(Api.java:7)",
]


def test_multiline_joins_until_next_firstline() -> None:
    run = Run([{"multiline": {"firstline": r"^\d{4}-\d{2}-\d{2}"}}])
    assert run.texts(*JAVA) == []
    out = run.feed("2024-05-01 10:00:01 INFO next")
    assert [r.line for r in out] == ["\n".join(JAVA)]
    assert out[0].start == 0 and out[0].end == offset_after(*JAVA)


def test_multiline_flushes_after_max_wait_time_without_new_lines() -> None:
    run = Run([{"multiline": {"firstline": "^START", "max_wait_time": "2s"}}])
    assert run.texts("START a", "  b") == []
    assert run.tick(1.0) == []
    assert run.texts("  c", after=1.5) == []  # the wait restarts at each line
    assert run.tick(1.9) == []
    assert [r.line for r in run.tick(0.2)] == ["START a\n  b\n  c"]


def test_multiline_max_lines_and_size() -> None:
    run = Run([{"multiline": {"firstline": "^S", "max_lines": 2}}])
    assert run.texts("S1", "a", "b", "S2") == ["S1\na", "b"]
    sized = Run([{"multiline": {"firstline": "^S"}}], max_line=10)
    assert sized.texts("S 1234", "5678", "9", "S") == ["S 1234\n5678", "9"]


def test_multiline_state_is_per_stream_after_cri() -> None:
    run = Run([{"cri": {}}, {"multiline": {"firstline": "^START"}}])
    out = run.feed(
        cri("stdout", "F", "START out"),
        cri("stderr", "F", "START err"),
        cri("stdout", "F", " out more"),
        cri("stderr", "F", " err more"),
        cri("stdout", "F", "START 2"),
        cri("stderr", "F", "START 3"),
    )
    assert [(r.labels["stream"], r.line) for r in out] == [
        ("stdout", "START out\n out more"),
        ("stderr", "START err\n err more"),
    ]


# ---- positions ---------------------------------------------------------------------


def test_no_stage_pipeline_offsets_follow_lines() -> None:
    run = Run([{"static_labels": {"a": "b"}}], start=10)
    run.feed("one", "two")
    assert run.safe() == 10 + offset_after("one", "two")


def test_held_multiline_lines_are_not_counted_as_shipped() -> None:
    run = Run([{"multiline": {"firstline": "^S"}}])
    run.feed("S1", "a")
    assert run.safe() == 0  # S1 and a are held
    out = run.feed("S2", "b")
    assert [r.line for r in out] == ["S1\na"]
    assert run.safe() == offset_after("S1", "a")  # S2 starts there and is held
    assert run.tick(10.0)[0].line == "S2\nb"
    assert run.safe() == offset_after("S1", "a", "S2", "b")


def test_cri_partial_of_one_stream_holds_positions_while_the_other_ships() -> None:
    run = Run([{"cri": {}}])
    first = cri("stdout", "P", "part")
    out = run.feed(cri("stdout", "F", "done"), first, cri("stderr", "F", "err"))
    assert [r.line for r in out] == ["done", "err"]
    assert run.safe() == offset_after(cri("stdout", "F", "done"))  # not past the P line
    assert [r.line for r in run.feed(cri("stdout", "F", " whole"))] == ["part whole"]
    assert run.safe() == run.offset


def test_dropped_lines_let_positions_advance() -> None:
    run = Run([{"drop": {"expression": "noise"}}])
    assert run.feed("noise 1", "noise 2") == []
    assert run.safe() == offset_after("noise 1", "noise 2")


def test_rotation_hands_on_what_the_old_file_held() -> None:
    run = Run([{"multiline": {"firstline": "^S"}}])
    run.feed("S old", "tail")
    out = run.feed("S new", identity=(1, 200))
    assert [r.line for r in out] == ["S old\ntail"]
    offsets = run.pipeline.safe_offsets()
    assert offsets == {IDENTITY: offset_after("S old", "tail"), (1, 200): 0}
    assert run.pipeline.safe_offsets() == {(1, 200): 0}


def test_copytruncate_restarts_offsets_at_zero() -> None:
    run = Run([{"multiline": {"firstline": "^S"}}], start=500)
    run.feed("S1")
    assert run.safe() == 500
    run.offset = 0  # the file was truncated and written again
    assert [r.line for r in run.feed("S2", "x")] == ["S1"]
    assert run.safe() == 0


def test_release_hands_on_everything_in_order() -> None:
    run = Run([{"cri": {}}, {"multiline": {"firstline": "^S"}}])
    run.feed(cri("stdout", "F", "S one"), cri("stdout", "P", "S tw"))
    released = run.pipeline.release(run.now)
    assert [r.line for r in released] == ["S one", "S tw"]
    assert run.pipeline.held_start() is None


def test_cri_partial_without_its_last_piece_ships_after_the_wait() -> None:
    run = Run([{"cri": {"max_partial_wait_time": "2s"}}])
    assert run.texts(cri("stdout", "P", "cut "), cri("stdout", "P", "off")) == []
    assert run.safe() == 0
    assert run.tick(1.9) == []
    assert [r.line for r in run.tick(0.1)] == ["cut off"]
    assert run.safe() == run.offset
