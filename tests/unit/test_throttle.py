"""The per-access-key token bucket, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from cloudmig import errors
from cloudmig.api.throttle import Throttled, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refused_then_refilled_at_the_rate() -> None:
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [b.try_acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.try_acquire("k")
    assert wait == pytest.approx(0.5)
    clock.t += 0.25
    assert b.try_acquire("k") == pytest.approx(0.25)  # half a token back: still refused
    clock.t += 0.25
    assert b.try_acquire("k") == 0.0
    assert b.try_acquire("k") > 0
    # Idle time refills up to the burst, never beyond it.
    clock.t += 3600
    assert [b.try_acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.try_acquire("k") > 0


def test_keys_have_their_own_buckets() -> None:
    b = TokenBuckets(rate=1.0, burst=1, clock=Clock())
    b.acquire("a")
    with pytest.raises(Throttled):
        b.acquire("a")
    b.acquire("b")


def test_throttled_is_the_rds_throttling_error_with_retry_headers() -> None:
    b = TokenBuckets(rate=0.5, burst=1, clock=Clock())
    b.acquire("k")
    with pytest.raises(errors.Throttling) as info:
        b.acquire("k")
    err = info.value
    assert isinstance(err, Throttled)
    assert (err.code, err.status) == ("Throttling", 400)
    assert err.message == "Request was denied due to request throttling."
    # The tea SDK reads x-acs-retry-after as a positive integer (it sleeps that many milliseconds).
    assert err.headers == {"x-acs-retry-after": "2000", "retry-after": "2"}


def test_retry_after_is_never_zero() -> None:
    err = Throttled(0.0000001)
    assert err.headers["x-acs-retry-after"] == "1" and err.headers["retry-after"] == "1"


def test_rate_zero_disables_the_limit() -> None:
    b = TokenBuckets(rate=0, burst=1, clock=Clock())
    assert not b.enabled
    for _ in range(1000):
        b.acquire("k")


def test_burst_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=1, burst=0)


def test_idle_buckets_are_dropped_when_many_keys_are_seen() -> None:
    clock = Clock()
    b = TokenBuckets(rate=1.0, burst=1, clock=clock, max_keys=10)
    for i in range(10):
        b.acquire(f"k{i}")
    clock.t += 5
    b.acquire("new")
    assert len(b._buckets) == 1
    # A dropped key starts full again, which is what its bucket would hold anyway.
    b.acquire("k0")


def test_concurrent_callers_never_get_more_than_the_burst() -> None:
    clock = Clock()  # frozen: no refill while the threads run
    b = TokenBuckets(rate=1.0, burst=50, clock=clock)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(1 for _ in range(100) if b.try_acquire("k") == 0.0)
        with lock:
            granted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50
