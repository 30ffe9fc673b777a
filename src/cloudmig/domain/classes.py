"""The instance class catalogue: each DBInstanceClass fixes the spec parameters of its instance.

A hot standby refuses to start when one of these is lower than on its primary, which is why the
assessment compares the source's values with the class (Check spec params).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceClass:
    code: str
    cpu: int
    memory_mb: int
    max_connections: int
    max_worker_processes: int
    max_wal_senders: int
    max_prepared_transactions: int
    max_locks_per_transaction: int

    def spec_params(self) -> dict[str, int]:
        return {
            "max_connections": self.max_connections,
            "max_prepared_transactions": self.max_prepared_transactions,
            "max_worker_processes": self.max_worker_processes,
            "max_wal_senders": self.max_wal_senders,
            "max_locks_per_transaction": self.max_locks_per_transaction,
        }


CATALOGUE: dict[str, InstanceClass] = {
    c.code: c
    for c in (
        InstanceClass("pg.n2.small.2c", 1, 2048, 200, 8, 16, 100, 64),
        InstanceClass("pg.n2.medium.2c", 2, 4096, 400, 16, 16, 200, 128),
        InstanceClass("pg.n2.large.2c", 4, 8192, 800, 32, 32, 400, 128),
        InstanceClass("pg.n2.xlarge.2c", 8, 16384, 1600, 64, 32, 800, 256),
        InstanceClass("pg.n4.2xlarge.2c", 16, 65536, 3200, 128, 64, 1600, 256),
    )
}


def lookup(code: str) -> InstanceClass | None:
    return CATALOGUE.get(code)
