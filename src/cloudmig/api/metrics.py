"""Prometheus counters of RDS API requests, kept by the API (cloudmig.metrics exposes them).

Labels are bounded: an action the registry knows or "unknown", an error class's code, "Success"
or "unknown".
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Histogram

from cloudmig import errors
from cloudmig.api.actions import REGISTRY

UNKNOWN = "unknown"
SUCCESS = "Success"

API_REQUESTS = Counter(
    "cloudmig_api_requests",
    "RDS API requests by action and result code.",
    ["action", "code"],
    registry=None,
)
API_DURATION = Histogram(
    "cloudmig_api_request_duration_seconds",
    "RDS API request duration by action and result code.",
    ["action", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)

_codes_lock = threading.Lock()
_codes: frozenset[str] = frozenset()


def _error_codes() -> frozenset[str]:
    found: set[str] = set()
    todo: list[type[errors.CloudmigError]] = [errors.CloudmigError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return frozenset(found)


def bounded_code(code: str) -> str:
    global _codes
    if code == SUCCESS:
        return code
    if code not in _codes:
        with _codes_lock:
            _codes = _error_codes()  # error classes defined after the first call
    return code if code in _codes else UNKNOWN


def bounded_action(action: str) -> str:
    # REGISTRY is complete once api.app has imported every action module (it does at import).
    return action if action in REGISTRY else UNKNOWN


def observe_api_request(action: str, code: str, seconds: float) -> None:
    """Count one API request. `code` is "Success" or the RDS error Code the request ended with."""
    labels = (bounded_action(action), bounded_code(code))
    API_REQUESTS.labels(*labels).inc()
    API_DURATION.labels(*labels).observe(max(seconds, 0.0))


def observe_api_outcome(what: str, seconds: float) -> None:
    """The same from the access log's `what`: "Action" on success, "Action:Code" or "-:Code" on error."""
    action, sep, code = what.partition(":")
    observe_api_request(action, code if sep else SUCCESS, seconds)
