"""Retries with backoff, as the TypeScript SDK does them (packages/sdk/src/retry.ts)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from .errors import TrajgateConnectionError, TrajgateError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    #: Attempts after the first.
    retries: int = 5
    #: Ceiling of the first backoff, in seconds; doubles each attempt.
    base_delay: float = 0.2
    #: Largest backoff in seconds (a server's Retry-After is capped by it too).
    max_delay: float = 10.0


def is_retryable(err: BaseException) -> bool:
    """Connection failures, 429 and 5xx are worth another try; other 4xx are the caller's to fix."""
    if isinstance(err, TrajgateConnectionError):
        return True
    return isinstance(err, TrajgateError) and (err.status == 429 or err.status >= 500)


def with_retry(
    attempt: Callable[[int], T],
    policy: RetryPolicy,
    can_retry: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Runs `attempt(n)` until it succeeds or fails for good. Between attempts it sleeps a random time in
    [0, min(max_delay, base_delay * 2**n)] ("full jitter": clients hit by one outage do not come back in
    lockstep), but at least the server's Retry-After (capped by max_delay)."""
    n = 0
    while True:
        try:
            return attempt(n)
        except Exception as err:  # noqa: BLE001 - filtered by can_retry, re-raised otherwise
            if n >= policy.retries or not can_retry(err):
                raise
            jitter = random.uniform(0, min(policy.max_delay, policy.base_delay * 2**n))
            floor = 0.0
            if isinstance(err, TrajgateError) and err.retry_after is not None:
                floor = min(policy.max_delay, err.retry_after)
            time.sleep(max(jitter, floor))
            n += 1
