"""The registry of implemented actions and typed access to request parameters.

Every value arrives as a string (the SDKs stringify integers). Handlers read only the parameters they
know; anything else (account plumbing such as ResourceOwnerId, OwnerId, RegionId, or parameters of
the real API a self-hosted service has no use for) is accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudmig import errors
from cloudmig.runtime import AppContext

Handler = Callable[[AppContext, "Params"], dict[str, Any]]
REGISTRY: dict[str, Handler] = {}

MAX_PARAM_LENGTH = 4096
MAX_SECRET_LENGTH = 1024
# An integer as the SDKs send it: ASCII digits with an optional sign (no "1_000", no "٣", no "1e3").
_INTEGER_RE = re.compile(r"[+-]?[0-9]{1,19}")
PAGE_SIZE_MAX = 100
PAGE_NUMBER_MAX = 10_000_000


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        REGISTRY[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Params:
    values: dict[str, str]

    def optional_str(self, name: str, *, max_len: int = MAX_PARAM_LENGTH) -> str | None:
        v = self.values.get(name)
        if v is None or v == "":
            return None
        if len(v) > max_len or "\x00" in v:
            raise errors.InvalidParameter(name)
        return v

    def required_str(self, name: str, *, max_len: int = MAX_PARAM_LENGTH) -> str:
        v = self.optional_str(name, max_len=max_len)
        if v is None:
            raise errors.MissingParameter(name)
        return v

    def secret(self, name: str) -> str:
        # Secrets may hold any character but NUL; never echo them in an error.
        v = self.values.get(name)
        if v is None or v == "":
            raise errors.MissingParameter(name)
        if "\x00" in v or len(v) > MAX_SECRET_LENGTH:
            raise errors.InvalidParameter(name)
        return v

    def optional_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.values.get(name)
        if v is None or v.strip() == "":
            return None
        if not _INTEGER_RE.fullmatch(v.strip()):
            raise errors.InvalidParameter(name, "It must be an integer.")
        n = int(v.strip())
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise errors.InvalidParameter(name, _range_text(lo, hi))
        return n

    def required_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
        n = self.optional_int(name, lo=lo, hi=hi)
        if n is None:
            raise errors.MissingParameter(name)
        return n

    def page(self, default_size: int = 30) -> tuple[int, int]:
        """PageNumber (default 1) and PageSize (1 to 100, default ``default_size``).

        A page past the end is not an error: it has no items, and the total still counts them all.
        """
        number = self.optional_int("PageNumber", lo=1, hi=PAGE_NUMBER_MAX)
        size = self.optional_int("PageSize", lo=1, hi=PAGE_SIZE_MAX)
        return (1 if number is None else number), (default_size if size is None else size)


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"It must be between {lo} and {hi}."
    if lo is not None:
        return f"It must be at least {lo}."
    return f"It must be at most {hi}."
