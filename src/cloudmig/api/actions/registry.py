"""The registry of implemented actions and typed access to request parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudmig import errors
from cloudmig.services.context import ServiceContext

Handler = Callable[[ServiceContext, "Params"], dict[str, Any]]
REGISTRY: dict[str, Handler] = {}

# Real parameters of the RDS API that a self-hosted service accepts and ignores (billing, network...).
MAX_PARAM_LENGTH = 4096


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
        if "\x00" in v or len(v) > 1024:
            raise errors.InvalidParameter(name)
        return v

    def optional_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.values.get(name)
        if v is None or v.strip() == "":
            return None
        try:
            n = int(v.strip())
        except ValueError:
            raise errors.InvalidParameter(name, "It must be an integer.") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise errors.InvalidParameter(name, f"It must be between {lo} and {hi}.")
        return n

    def required_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
        n = self.optional_int(name, lo=lo, hi=hi)
        if n is None:
            raise errors.MissingParameter(name)
        return n

    def page(self, default_size: int = 30) -> tuple[int, int]:
        number = self.optional_int("PageNumber", lo=1, hi=10_000_000) or 1
        size = self.optional_int("PageSize", lo=1, hi=100) or default_size
        return number, size
