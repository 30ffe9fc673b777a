"""One managed instance as the engine and the services act on it: its paths, its server lifecycle,
its configuration, and connections over its admin socket. The engine calls this object instead of
assembling bin dirs, OS users and socket paths itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cloudmig.domain import classes
from cloudmig.domain.classes import InstanceClass
from cloudmig.domain.reserved import ADMIN_ROLE
from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.pg import compat, ctl
from cloudmig.pg.conf import StandbyConf
from cloudmig.pg.files import tree_bytes
from cloudmig.pg.runner import PgCommandError
from cloudmig.pg.source import SourceEndpoint
from cloudmig.pg.sql import connect_socket
from cloudmig.store.records import InstanceRecord

Conn = psycopg.Connection[tuple[Any, ...]]

# Observation must notice a stopped or frozen server within one interval.
OBSERVE_CONNECT_TIMEOUT = 3
# How long halt() lets a fast shutdown take before it shuts down immediately.
HALT_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class ManagedInstance:
    provider: LocalInstanceProvider
    id: str
    port: int
    major: int
    instance_class: InstanceClass
    storage_gb: int

    @classmethod
    def of(cls, provider: LocalInstanceProvider, rec: InstanceRecord) -> ManagedInstance:
        klass = classes.lookup(rec.instance_class)
        if klass is None:
            raise ValueError(f"instance {rec.id} has an unknown class {rec.instance_class!r}")
        return cls(provider, rec.id, rec.port, rec.major, klass, rec.storage_gb)

    # ---- paths -----------------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.provider.pgdata(self.id)

    @property
    def socket_dir(self) -> Path:
        return self.provider.socket_dir(self.id)

    @property
    def logfile(self) -> Path:
        return self.provider.logfile(self.id)

    @property
    def passfile(self) -> Path:
        return self.provider.passfile_path(self.id)

    @property
    def storage_bytes(self) -> int:
        return self.storage_gb * 1024**3

    # ---- server lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.provider.start(self.id, self.major)

    def stop(self, mode: str = "fast") -> None:
        self.provider.stop(self.id, self.major, mode=mode)

    def halt(self, grace: float = HALT_GRACE_SECONDS) -> None:
        """Stop the server now: a fast shutdown, or an immediate one when that does not end within
        `grace` (a hung walreceiver ignores the fast shutdown's request; the postmaster kills what
        ignores an immediate one)."""
        try:
            self.provider.stop(self.id, self.major, mode="fast", timeout=grace)
        except PgCommandError:
            self.provider.stop(self.id, self.major, mode="immediate")

    def is_running(self) -> bool:
        return self.provider.is_running(self.id, self.major)

    def ensure_running(self) -> bool:
        """Start the server unless it runs; True when it had to be started."""
        if self.is_running():
            return False
        self.start()
        return True

    def configured_as_standby(self) -> bool:
        """Whether the cluster would start as a standby (its promotion, if any, did not complete)."""
        return (self.pgdata / compat.standby_file(self.major)).exists()

    def reload(self) -> None:
        ctl.reload(
            self.provider.bin_dir(self.major),
            self.pgdata,
            user=self.provider.user,
            runner=self.provider.runner,
        )

    def promote(self) -> None:
        self.provider.promote(self.id, self.major)

    def create(self) -> None:
        self.provider.create(self.id, port=self.port, cls=self.instance_class, major=self.major)

    def reset(self) -> None:
        """An empty running cluster again; a complete copy in it is kept aside."""
        self.provider.reset(self.id, port=self.port, cls=self.instance_class, major=self.major)

    def prepare_copy_dir(self) -> Path:
        """Where the next copy goes while the server in pgdata may still run (see install_copy)."""
        return self.provider.prepare_copy_dir(self.id)

    def stop_for_copy(self) -> None:
        """Halt the server; its data directory goes unless it is a complete copy (see install_copy)."""
        self.halt()
        self.provider.discard_unless_copy(self.id)

    def install_copy(self) -> None:
        """The finished copy becomes pgdata; the server must be stopped (stop_for_copy)."""
        self.provider.install_copy(self.id)

    def destroy(self) -> None:
        self.provider.destroy(self.id, self.major)

    # ---- configuration ---------------------------------------------------------------------------

    def apply_conf(self, standby: StandbyConf | None = None) -> list[str]:
        """Write cloudmig's configuration (see pg.conf.apply_managed_conf); takes effect on start
        or reload. Returns the copied settings it removed."""
        return self.provider.apply_conf(self.id, self.port, self.instance_class, standby=standby)

    def write_source_passfile(self, endpoint: SourceEndpoint, password: str) -> Path:
        return self.provider.write_source_passfile(self.id, endpoint, password)

    def remove_passfile(self) -> None:
        self.passfile.unlink(missing_ok=True)

    # ---- access ----------------------------------------------------------------------------------

    def connect(self, user: str = ADMIN_ROLE, *, dbname: str = "postgres", connect_timeout: int = 10) -> Conn:
        """An autocommit connection over the admin socket (trust: only root and the PostgreSQL OS
        user reach it). Before promotion the cluster has the source's roles, not ADMIN_ROLE."""
        return connect_socket(
            self.socket_dir, self.port, user, dbname=dbname, connect_timeout=connect_timeout
        )

    def free_bytes(self) -> int:
        return self.provider.free_bytes(self.id)

    def size_bytes(self) -> int:
        """Bytes the instance's data directory and a copy in progress occupy (what counts against
        DBInstanceStorage)."""
        return tree_bytes(self.pgdata) + self.copy_bytes()

    def copy_bytes(self) -> int:
        """Bytes a copy in progress has written so far."""
        return tree_bytes(self.provider.incoming(self.id))

    def copied_data_bytes(self) -> int:
        """The lengths of the files a copy in progress has received over its base backup connection
        (uncompressed; the WAL stream, written under pg_wal by another connection, left out)."""
        return tree_bytes(self.provider.incoming(self.id), lengths=True, leave_out="pg_wal")
