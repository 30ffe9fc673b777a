"""What the API does when the store's disk is full.

Reads answer (their nonces may be kept in memory: `cloudmig.api.nonces`). A write that hits the full
disk answers `StoreFull` (ServiceUnavailable, 503, naming the disk) and has changed nothing: each
store write is one transaction, rolled back when it cannot be written. DeleteDBInstance, which is how
an operator frees space, may spend the space reserve (`cloudmig.store.reserve`) and retries its
writes once.
"""

from __future__ import annotations

from typing import Any

from cloudmig import errors
from cloudmig.api.actions.registry import Handler, Params
from cloudmig.runtime import AppContext
from cloudmig.store.db import is_disk_full, store_location

# Besides reads: actions whose replay changes nothing once they were carried out (a second Delete
# finds the instance deleting or gone). Their nonces may be kept in memory while the store cannot
# write. (The replay of a Delete refused for the full disk does what its signer asked, as the replay
# of a throttled request does.)
REPLAY_SAFE_ACTIONS = frozenset({"DeleteDBInstance"})
# Actions that free space on the data dir's disk: they may spend the space reserve.
SPACE_FREEING_ACTIONS = frozenset({"DeleteDBInstance"})


def replay_safe(action: str) -> bool:
    """Reads (Describe*) and `REPLAY_SAFE_ACTIONS`."""
    return action.startswith("Describe") or action in REPLAY_SAFE_ACTIONS


def store_full(ctx: AppContext) -> errors.StoreFull:
    return errors.StoreFull(store_location(ctx.settings.effective_store_url))


def run_handler(ctx: AppContext, action: str, handler: Handler, params: Params) -> dict[str, Any]:
    """Run an action's handler; a full store disk becomes `StoreFull`, after one retry on the space
    reserve for a space-freeing action. A retried handler runs again from the start: the
    space-freeing ones are idempotent."""
    try:
        return handler(ctx, params)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        if action not in SPACE_FREEING_ACTIONS or ctx.reserve is None or not ctx.reserve.release():
            raise store_full(ctx) from exc
    try:
        return handler(ctx, params)
    except Exception as exc:
        if is_disk_full(exc):
            raise store_full(ctx) from exc
        raise
