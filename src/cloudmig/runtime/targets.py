"""The assessment's view of a managed instance."""

from __future__ import annotations

from cloudmig.checks import TargetSpec
from cloudmig.domain import classes
from cloudmig.runtime.context import AppContext
from cloudmig.store.records import InstanceRecord


def target_spec(ctx: AppContext, inst: InstanceRecord) -> TargetSpec:
    provider = ctx.provider
    cls = classes.lookup(inst.instance_class)
    assert cls is not None
    allowed = provider.settings.extension_allow_list
    return TargetSpec(
        major=inst.major,
        instance_class=cls,
        storage_gb=inst.storage_gb,
        free_bytes=lambda: provider.free_bytes(inst.id),
        connect_admin=lambda dbname: provider.connect_admin(inst.id, inst.port, dbname=dbname),
        extension_allow_list=None if allowed is None else frozenset(allowed),
        pg_bin_dirs=tuple(provider.settings.pg_bin_dirs),
        slot_wal_warning_mb=provider.settings.slot_wal_warning_mb,
        slot_wal_limit_mb=provider.settings.slot_wal_limit_mb,
    )
