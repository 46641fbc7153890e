from __future__ import annotations

from edge.gateway.limits import TokenBucket


def test_a_bucket_refuses_beyond_its_burst_and_says_how_long_to_wait():
    bucket = TokenBucket(rate=10, burst=20)
    assert bucket.take(15) == 0
    wait = bucket.take(15)
    assert 0.9 < wait <= 1.1  # 10 missing at 10 per second


def test_a_request_larger_than_the_burst_passes_when_the_bucket_is_full():
    bucket = TokenBucket(rate=1, burst=5)
    assert bucket.take(50) == 0
    assert bucket.take(1) > 0
