"""A real `cloudmig serve` process for e2e tests, and the official SDK clients pointed at it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Below the kernel's ephemeral range (32768+), so client sockets never take an instance's port.
_port_block = [20000 + (os.getpid() % 12) * 1000]


def instance_port_range() -> tuple[int, int]:
    """A block of instance ports of its own for each service a test starts."""
    lo = _port_block[0]
    _port_block[0] += 40
    return lo, lo + 39


@dataclass
class Service:
    base: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    key_id: str = ""
    key_secret: str = ""
    runs: int = 0

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "run"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        lo, hi = getattr(self, "_ports", None) or instance_port_range()
        self._ports = (lo, hi)
        env = dict(os.environ)
        env.update(
            {
                "CLOUDMIG_DATA_DIR": str(self.data_dir),
                "CLOUDMIG_RUNTIME_DIR": str(self.runtime_dir),
                "CLOUDMIG_INSTANCE_PORT_MIN": str(lo),
                "CLOUDMIG_INSTANCE_PORT_MAX": str(hi),
                "CLOUDMIG_INSTANCE_SHARED_BUFFERS": "16MB",
                "CLOUDMIG_OBSERVE_SECONDS": "1",
                "CLOUDMIG_ENGINE_TICK_SECONDS": "0.5",
                "CLOUDMIG_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloudmig", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def start(self, timeout: float = 60) -> Service:
        self.base.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        out = open(self.base / f"serve-{self.runs}.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloudmig", "serve", "--port", str(self.port)],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cloudmig serve exited: {(self.base / f'serve-{self.runs}.out').read_text()}"
                )
            try:
                if httpx.get(f"http://{self.endpoint}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("cloudmig serve did not become ready")
        if not self.key_id:
            created = json.loads(self.cli("keys", "create", "--json").stdout)
            self.key_id, self.key_secret = created["AccessKeyId"], created["AccessKeySecret"]
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as when a host loses the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def destroy(self) -> None:
        """Stop the service and every instance it started: managed clusters outlive the service."""
        self.stop()
        from cloudmig.instances.provider import LocalInstanceProvider
        from cloudmig.settings import Settings
        from tests.support.pgcluster import DEFAULT_MAJOR

        settings = Settings(data_dir=self.data_dir, runtime_dir=self.runtime_dir)
        provider = LocalInstanceProvider(settings)
        for inst_dir in sorted((self.data_dir / "instances").glob("pgm-*")):
            version_file = inst_dir / "pgdata" / "PG_VERSION"
            version = int(version_file.read_text().strip()) if version_file.exists() else DEFAULT_MAJOR
            with contextlib.suppress(Exception):  # best effort at teardown
                provider.stop(inst_dir.name, version)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.base.glob("serve-*.out")))

    # ---- clients -------------------------------------------------------------------------------

    def tea(self, *, v1: bool = False, secret: str | None = None, key_id: str | None = None) -> Any:
        from alibabacloud_rds20140815.client import Client
        from alibabacloud_tea_openapi.models import Config

        cfg = Config(
            access_key_id=key_id or self.key_id,
            access_key_secret=secret or self.key_secret,
            endpoint=self.endpoint,
            protocol="http",
            region_id="cn-hangzhou",
            read_timeout=60000,
            connect_timeout=10000,
        )
        if v1:
            cfg.signature_algorithm = "v2"
        return Client(cfg)

    def core(self, *, secret: str | None = None, key_id: str | None = None) -> Any:
        from aliyunsdkcore.client import AcsClient

        return AcsClient(key_id or self.key_id, secret or self.key_secret, "cn-hangzhou", timeout=60)

    def core_call(self, request: Any, **kw: Any) -> dict[str, Any]:
        request.set_endpoint(self.endpoint)
        return dict(json.loads(self.core(**kw).do_action_with_exception(request)))
