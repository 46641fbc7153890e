"""Type stubs of the native hot path (see native/src/lib.rs, native/src/otlp.rs and
native/src/rw2.rs)."""

def loki_push_parts(
    labels: str, timestamps: list[int], lines: list[str], budget: int
) -> list[bytes] | None: ...
def loki_push_split(
    labels: str, timestamps: list[int], lines: list[str], budget: int
) -> tuple[list[bytes], list[int]] | None: ...
def loki_push_request(labels: str, timestamps: list[int], lines: list[str]) -> bytes: ...
def lines_deltas(offsets: list[int]) -> bytes | None: ...
def otlp_split(
    body: bytes, max_bytes: int, attributes: list[tuple[str, str]] = ...
) -> tuple[list[tuple[bytes, bytes, int]], int, list[int]]: ...
def rw2_convert(
    body: bytes,
) -> (
    tuple[
        list[bytes],
        list[tuple[tuple[str, str], ...]],
        list[list[tuple[float, int]]],
        list[bytes],
        int,
        int,
        int,
    ]
    | None
): ...
