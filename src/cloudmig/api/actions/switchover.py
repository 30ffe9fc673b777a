"""ActivateMigrationTargetInstance (spec §1.6)."""

from __future__ import annotations

from typing import Any

from cloudmig import errors
from cloudmig.api.actions.registry import Params, action
from cloudmig.domain.ids import INSTANCE_ID_RE
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
    t = svc.request_switchover(ctx, instance_id, force=force == "1")
    return {
        "DBInstanceName": t.instance_id,
        "TaskId": t.id,
        "SourceIpAddress": t.source_ip,
        "SourcePort": t.source_port,
    }
