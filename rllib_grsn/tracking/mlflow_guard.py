"""Calls to an MLflow store that never stop or stall training.

MLflow's HTTP client retries a failed request 7 times with exponential back-off and waits up to 120 s
for each answer, so one call to a tracking server that went away can block for many minutes, and Tune
calls its logger callbacks on the driver's main loop: training (and Ctrl+C) would wait. Here:

- :func:`bounded_http_requests` gives every request a short timeout and one immediate retry, so a
  failed call costs seconds (values a user set in the environment are kept);
- :class:`TrackingGuard` runs each call, turns a failure into a one-line warning (once per outage) and a
  count of what was not logged, and after a failure stops calling the store for a while (a circuit
  breaker whose pause doubles while the store stays down), then tries again: logging resumes when the
  store is back. A request the store rejects (a bad value, a conflict) is dropped and counted but does
  not pause the others.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# MLflow's environment variables (mlflow.environment_variables) -> our bounds. With one retry and
# urllib3's back-off (none before the first retry), a call to a dead server costs at most about
# 2 x the timeout.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
# The pause after a failure, doubling up to the maximum while the store stays down.
RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 300.0
# MLflow error codes of a request the store refused on its merits: the store itself works.
REJECTED = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_DOES_NOT_EXIST",
        "BAD_REQUEST",
        "RESOURCE_CONFLICT",
        "ALREADY_EXISTS",
        "INVALID_STATE",
    }
)
# The order the end-of-experiment summary lists what was not logged.
KINDS = ("runs", "results", "metric values", "params", "tags", "artifacts", "status updates")


@contextmanager
def bounded_http_requests() -> Iterator[None]:
    """Within the block, MLflow HTTP requests use :data:`HTTP_BOUNDS` (each variable the environment
    does not set already); afterwards the environment is as it was."""
    added = {k: v for k, v in HTTP_BOUNDS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def failure_summary(err: BaseException) -> str:
    """What went wrong in a few words: ``connection refused``, ``no answer in 3 s``, ``HTTP 503``, or
    the error's text, cut."""
    text = " ".join(str(err).split())
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered or isinstance(err, TimeoutError):
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
        return f"no answer in {timeout} s"
    if match := re.search(r"error code (\d{3})", text):
        return f"HTTP {match.group(1)}"
    text = text or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def is_rejection(err: BaseException) -> bool:
    """Whether ``err`` is the store refusing one request (it answered), not the store failing."""
    return getattr(err, "error_code", None) in REJECTED


class TrackingGuard:
    """Runs MLflow calls for one tracking URI so that none raises, blocks long or is retried on every
    training iteration while the store is down; counts what was not logged.

    Args:
        uri: the tracking URI (named in the warnings).
        retry_after_s: the pause after a failure, doubled per further failure up to ``max_retry_after_s``.
        clock: seconds on a monotonic clock.
    """

    def __init__(
        self,
        uri: str,
        retry_after_s: float = RETRY_AFTER_S,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.retry_after_s = retry_after_s
        self.max_retry_after_s = max(max_retry_after_s, retry_after_s)
        self.clock = clock
        self.dropped: Counter[str] = Counter()
        self.failures = 0  # consecutive failed calls
        self._paused_until = -float("inf")
        self._rejection_warned = False

    def restarted(self) -> TrackingGuard:
        """A fresh guard with the same settings (counts and pause cleared)."""
        return TrackingGuard(self.uri, self.retry_after_s, self.max_retry_after_s, self.clock)

    @property
    def paused(self) -> bool:
        """Whether calls are being skipped after a failure."""
        return self.clock() < self._paused_until

    def call(
        self, fn: Callable[..., Any], *args: Any, lost: Mapping[str, int] | None = None, **kwargs: Any
    ) -> bool:
        """``fn(*args, **kwargs)``; False when it failed or was skipped, ``lost`` then counted."""
        return self._attempt(fn, args, kwargs, lost)[0]

    def fetch(
        self, fn: Callable[..., T], *args: Any, lost: Mapping[str, int] | None = None, **kwargs: Any
    ) -> T | None:
        """``fn(*args, **kwargs)``'s value; None when it failed or was skipped, ``lost`` then counted."""
        return self._attempt(fn, args, kwargs, lost)[1]

    def drop(self, lost: Mapping[str, int]) -> None:
        """Counts what was not logged."""
        self.dropped.update({k: n for k, n in lost.items() if n})

    def summary(self) -> str | None:
        """One line with what was not logged (None: everything was)."""
        if not self.dropped:
            return None
        kinds = [k for k in KINDS if self.dropped[k]] + [k for k in self.dropped if k not in KINDS]
        counts = [f"{self.dropped[k]} {k.removesuffix('s') if self.dropped[k] == 1 else k}" for k in kinds]
        return (
            f"rllib: warning: MLflow at {self.uri}: not logged: {', '.join(counts)} "
            "(MLflow failed, was unreachable or refused them; training was not affected)"
        )

    def _attempt(
        self, fn: Callable[..., T], args: tuple, kwargs: dict[str, Any], lost: Mapping[str, int] | None
    ) -> tuple[bool, T | None]:
        if self.paused:
            self.drop(lost or {})
            return False, None
        try:
            with bounded_http_requests():
                value = fn(*args, **kwargs)
        except Exception as err:  # any failure of the store: training must go on
            self.drop(lost or {})
            self._failed(err)
            return False, None
        self._succeeded()
        return True, value

    def _failed(self, err: Exception) -> None:
        if is_rejection(err):
            if not self._rejection_warned:
                self._rejection_warned = True
                self._warn(f"rejected a request ({failure_summary(err)}); it is not logged, training goes on")
            return
        pause = min(self.retry_after_s * 2**self.failures, self.max_retry_after_s)
        self._paused_until = self.clock() + pause
        self.failures += 1
        if self.failures == 1:
            self._warn(
                f"failed ({failure_summary(err)}); training goes on without it, retrying in {pause:g} s"
            )

    def _succeeded(self) -> None:
        if self.failures:
            print(f"rllib: MLflow at {self.uri} answers again; logging resumes", file=sys.stderr, flush=True)
        self.failures = 0

    def _warn(self, what: str) -> None:
        print(f"rllib: warning: MLflow at {self.uri} {what}", file=sys.stderr, flush=True)
