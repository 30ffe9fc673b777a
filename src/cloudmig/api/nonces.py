"""Recording request nonces, also while the store's disk is full.

Every signed request's nonce goes to the store (`cloudmig.store.keys.record_nonce`). When the store's
disk is full that write fails. For a replay-safe request (a read, or a Delete: see
`cloudmig.api.fullstore.replay_safe`) the nonce is then kept in process memory instead, so reads and
Deletes keep answering; any other request gets `StoreFull` and changes nothing, as a throttled one.

Why a nonce stays single-use within the timestamp window:

* memory is looked at before the store, and the store (a read, which a full disk allows) before a
  nonce goes to memory; a lock per nonce (striped) makes that sequence atomic, so whichever holds
  a nonce, it is accepted once;
* a memory entry lives until the end of its request's timestamp window; after that the protocol
  refuses the request as expired before it looks at the nonce, so forgetting it then is safe;
* one process serves the API of a store (the data dir lock), so no other process must see memory;
* memory entries are written to the store as soon as it takes writes again. What a restart loses
  before that are nonces of replay-safe requests only: a read's replay changes nothing, a carried-out
  Delete's finds the instance deleting or gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from cloudmig import errors
from cloudmig.store import keys as key_store
from cloudmig.store.db import is_disk_full

log = logging.getLogger(__name__)

# Nonces held in memory at most (a full disk for the whole window at the default rate limit of one
# key is 45 000); past that even reads answer StoreFull rather than forget an unexpired nonce.
MEMORY_CAPACITY = 100_000
_STRIPES = 64


class NonceKeeper:
    """The API's `NonceRecorder`: the store first, process memory when the store's disk is full."""

    def __init__(
        self,
        db: Engine,
        *,
        now: Callable[[], datetime],
        replay_safe: Callable[[str], bool],
        store_full: Callable[[], errors.StoreFull],
        capacity: int = MEMORY_CAPACITY,
    ) -> None:
        self._db = db
        self._now = now
        self._replay_safe = replay_safe
        self._store_full = store_full
        self._capacity = capacity
        self._memory: dict[tuple[str, str], datetime] = {}
        self._memory_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def __call__(self, key_id: str, nonce: str, expires_at: datetime, action: str) -> bool:
        """True when the nonce is new for this key; raises `StoreFull` when it cannot be kept."""
        with self._stripes[hash((key_id, nonce)) % _STRIPES]:
            now = self._now()
            if self._in_memory(key_id, nonce, now):
                return False
            try:
                fresh = key_store.record_nonce(self._db, key_id, nonce, expires_at, now)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                return self._keep_in_memory(key_id, nonce, expires_at, action, now, exc)
        if fresh and self._memory:
            self._save_memory(now)
        return fresh

    def in_memory(self) -> int:
        """How many nonces only memory holds (for tests and diagnostics)."""
        with self._memory_lock:
            return len(self._memory)

    def _in_memory(self, key_id: str, nonce: str, now: datetime) -> bool:
        with self._memory_lock:
            expires_at = self._memory.get((key_id, nonce))
            return expires_at is not None and expires_at >= now

    def _keep_in_memory(
        self, key_id: str, nonce: str, expires_at: datetime, action: str, now: datetime, cause: Exception
    ) -> bool:
        if not self._replay_safe(action):
            raise self._store_full() from cause
        if key_store.nonce_seen(self._db, key_id, nonce, now):
            return False
        with self._memory_lock:
            self._purge(now)
            if len(self._memory) >= self._capacity:
                raise self._store_full() from cause
            self._memory[(key_id, nonce)] = expires_at
        return True

    def _save_memory(self, now: datetime) -> None:
        """Move the nonces memory holds to the store, now that it takes writes again. An entry leaves
        memory only once the store has it, so a replay finds it in one or the other."""
        with self._memory_lock:
            self._purge(now)
            pending = list(self._memory.items())
        for (key_id, nonce), expires_at in pending:
            try:
                key_store.record_nonce(self._db, key_id, nonce, expires_at, now)
            except Exception as exc:
                if is_disk_full(exc):
                    return  # full again: keep the rest in memory
                log.exception("saving a nonce kept in memory failed")
                return
            with self._memory_lock:
                self._memory.pop((key_id, nonce), None)
        if pending:
            log.info("the store takes writes again: %d nonce(s) kept in memory saved to it", len(pending))

    def _purge(self, now: datetime) -> None:
        expired = [k for k, exp in self._memory.items() if exp < now]
        for k in expired:
            del self._memory[k]
