"""Everything a use case or an engine step needs, built once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from cloudmig.domain.tls import SourceTlsRequest, effective_sslmode
from cloudmig.instances.osuser import ensure_reachable, pg_os_user
from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.pg.runner import SUBPROCESS, CommandRunner
from cloudmig.pg.source import Source, SourceTls
from cloudmig.runtime.clock import Clock, SystemClock
from cloudmig.runtime.notifier import Notifier
from cloudmig.secretbox import SecretBox
from cloudmig.settings import Settings
from cloudmig.store import meta as meta_store
from cloudmig.store.db import open_store
from cloudmig.store.records import TaskRecord
from cloudmig.store.reserve import SpaceReserve


@dataclass
class AppContext:
    settings: Settings
    db: Engine
    box: SecretBox
    provider: LocalInstanceProvider
    clock: Clock = field(default_factory=SystemClock)
    # How PostgreSQL binaries are run (the provider holds the same one); tests inject fakes.
    runner: CommandRunner = SUBPROCESS
    notifier: Notifier = field(default_factory=Notifier)
    # Space a DeleteDBInstance may spend when the store's disk is full (SQLite stores, servers only).
    reserve: SpaceReserve | None = None
    _installation_id: str = field(default="", repr=False)

    def now(self) -> datetime:
        return self.clock.now()

    def installation_id(self) -> str:
        """This installation's id (in every slot name; made once per store)."""
        if not self._installation_id:
            self._installation_id = meta_store.installation_id(self.db)
        return self._installation_id


def default_root_cert(settings: Settings) -> str | None:
    path = settings.source_sslrootcert
    return path.read_text() if path is not None else None


def tls_for(
    ctx: AppContext, asked: SourceTlsRequest, category: str, cert_name: str, instance_id: str = ""
) -> SourceTls:
    """TLS settings from what a task asked and the defaults; a CA bundle is written to a 0600 file
    beside the instance's passfile (or in the runtime dir without an instance)."""
    pem = asked.root_cert_pem or default_root_cert(ctx.settings)
    mode = effective_sslmode(asked.sslmode, ctx.settings.source_sslmode, category, pem is not None)
    if pem is None or mode in ("disable", "allow"):
        return SourceTls(mode)
    if instance_id:
        return SourceTls(mode, ctx.provider.write_source_root_cert(instance_id, cert_name, pem))
    return SourceTls(mode, ctx.provider.write_runtime_cert(cert_name, pem))


def task_source(ctx: AppContext, task: TaskRecord) -> Source:
    """The task's source; its password is opened from the store's sealed copy when first used."""
    sealed = task.source_password_enc
    opened: list[str] = []

    def secret() -> str:
        if not opened:
            opened.append(ctx.box.open(sealed))
        return opened[0]

    asked = SourceTlsRequest.from_json(task.request.get("SourceTls"))
    return Source(
        task.source_ip,
        task.source_port,
        task.source_account,
        secret,
        tls=tls_for(ctx, asked, task.source_category, f"root-{task.id}.crt", task.instance_id),
        connect_timeout=ctx.settings.source_connect_timeout,
        category=task.source_category,
    )


def prepare_data_dir(settings: Settings) -> None:
    """Create the data dir; when root, make sure the PostgreSQL OS user can reach instance dirs."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    settings.instances_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    settings.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_reachable(settings.instances_dir, pg_os_user(settings), fixable_roots=[settings.data_dir])


def _private_sqlite_file(settings: Settings) -> None:
    """The data dir is 0711 so the PostgreSQL user can reach instances; the store must stay ours.
    SQLite gives its -wal and -shm files the database file's mode."""
    if settings.store_url:
        return
    path = settings.sqlite_path
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def build_context(settings: Settings, *, for_server: bool = True) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    if for_server:
        prepare_data_dir(settings)
    _private_sqlite_file(settings)
    db = open_store(settings.effective_store_url)
    box = SecretBox.from_settings(settings.secret_key, settings.key_file)
    reserve = None
    if for_server and not settings.store_url and settings.store_reserve_mb > 0:
        reserve = SpaceReserve(settings.sqlite_path.parent, settings.store_reserve_mb << 20)
        reserve.ensure()
    runner = SUBPROCESS
    provider = LocalInstanceProvider(settings, runner)
    return AppContext(settings=settings, db=db, box=box, provider=provider, runner=runner, reserve=reserve)
