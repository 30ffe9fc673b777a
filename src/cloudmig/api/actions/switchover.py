"""ActivateMigrationTargetInstance (spec §1.6)."""

from __future__ import annotations

from typing import Any

from cloudmig import errors
from cloudmig.api.actions.registry import Params, action
from cloudmig.domain.ids import INSTANCE_ID_RE
from cloudmig.domain.switchover import FenceChoice
from cloudmig.runtime import AppContext
from cloudmig.services import switchover as svc


@action("ActivateMigrationTargetInstance")
def activate_migration_target_instance(ctx: AppContext, p: Params) -> dict[str, Any]:
    instance_id = p.required_str("DBInstanceName", max_len=64)
    if not INSTANCE_ID_RE.match(instance_id):
        raise errors.InstanceNotFound()
    mode = p.optional_str("SwitchTimeMode", max_len=8) or "0"
    if mode != "0":
        raise errors.InvalidParameter("SwitchTimeMode", "Only 0 (switch immediately) is supported.")
    force = p.optional_str("ForceSwitch", max_len=8) or "0"
    if force not in ("0", "1"):
        raise errors.InvalidParameter("ForceSwitch", "It must be 0 or 1.")
    p.optional_str("SwitchTime", max_len=64)  # reserved by the API; accepted and ignored
    # Extensions (the shape of SwitchOverMajorVersionUpgrade's SwitchoverTimeout; the SDK drops
    # unknown parameters, the CLI and raw calls send them).
    timeout = p.optional_int("SwitchoverTimeout", lo=10, hi=3600)
    fence = p.optional_str("SourceFence", max_len=8)
    if fence is not None and fence not in {c.value for c in FenceChoice}:
        raise errors.InvalidParameter("SourceFence", "It must be auto or off.")
    t = svc.request_switchover(
        ctx,
        instance_id,
        force=force == "1",
        timeout_seconds=None if timeout is None else float(timeout),
        fence=None if fence is None else FenceChoice(fence),
    )
    return {
        "DBInstanceName": t.instance_id,
        "TaskId": t.id,
        "SourceIpAddress": t.source_ip,
        "SourcePort": t.source_port,
    }
