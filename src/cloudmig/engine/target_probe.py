"""A quick read-only look at a managed instance before a migration is accepted."""

from __future__ import annotations

from cloudmig.checks import gather_target
from cloudmig.checks.rules import target_not_empty
from cloudmig.engine.targets import target_spec
from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.store.records import InstanceRecord


def non_empty_reason(provider: LocalInstanceProvider, inst: InstanceRecord) -> str | None:
    """Why the instance cannot receive a migration (a database or a table exists), or None."""
    facts = gather_target(target_spec(provider, inst))
    if not facts.connected:
        # The admin role only exists on an instance cloudmig initialised and never migrated into.
        return f"cloudmig cannot inspect it ({facts.connect_error})"
    problems = target_not_empty(facts)
    return "; ".join(problems) if problems else None
