"""Names cloudmig reserves for itself on the instances it manages."""

from __future__ import annotations

ADMIN_ROLE = "cloudmig_admin"
# Role names a source must not have (Check rds user): cloudmig creates them on its instances.
RESERVED_ROLES: frozenset[str] = frozenset({ADMIN_ROLE})
