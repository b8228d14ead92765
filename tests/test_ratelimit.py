"""The per-person limiter, on an injected clock."""

from __future__ import annotations

from bot.ratelimit import PRUNE_EVERY, UserLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_even_refill() -> None:
    clock = Clock()
    limiter = UserLimiter(6, clock)  # 6 at once, then one every 10 s
    assert [limiter.take("u") for _ in range(6)] == [0.0] * 6
    assert limiter.take("u") == 10.0
    clock.now = 5.0
    assert limiter.take("u") == 5.0
    clock.now = 10.0
    assert limiter.take("u") == 0.0
    assert limiter.take("other") == 0.0  # each person has their own allowance


def test_zero_means_no_limit() -> None:
    limiter = UserLimiter(0)
    assert all(limiter.take("u") == 0.0 for _ in range(1000))
    assert len(limiter) == 0


def test_idle_people_are_forgotten() -> None:
    clock = Clock()
    limiter = UserLimiter(60, clock)
    for i in range(PRUNE_EVERY - 1):
        limiter.take(f"u{i}")
    clock.now = 120.0  # everyone's bucket is full again
    limiter.take("late")
    assert len(limiter) == 1
