"""Backoff schedules: the delay before attempt n+1 after the n-th failure."""
from __future__ import annotations

from flowgit.core.model import RetryPolicy


def fibonacci(n: int) -> int:
    a, b = 1, 2
    for _ in range(max(n - 1, 0)):
        a, b = b, a + b
    return a


def delay(policy: RetryPolicy, failures: int) -> float:
    """Seconds to wait after `failures` failures (1-based): 1, 2, 4, 8 ... or 1, 2, 3, 5 ..."""
    n = max(failures, 1)
    if policy.strategy == "fixed":
        raw = policy.base
    elif policy.strategy == "fibonacci":
        raw = policy.base * fibonacci(min(n, 80))  # past 80 the cap has long applied
    else:
        raw = policy.base * (2 ** min(n - 1, 62))
    return float(min(raw, policy.cap))


def exhausted(policy: RetryPolicy, failures: int) -> bool:
    return failures >= policy.max_attempts
