"""A real `cloudmig serve` process in a throwaway data dir: what the demo, the e2e tests and the
benchmarks drive over the RDS API."""

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

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Below the kernel's ephemeral range (32768+), so client sockets never take an instance's port.
_port_block = [20000 + (os.getpid() % 12) * 1000]
PORTS_PER_SERVICE = 40


def _block_is_free(lo: int, size: int) -> bool:
    for port in range(lo, lo + size):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def instance_port_range() -> tuple[int, int]:
    """A block of instance ports of its own for each service this process starts (nothing listens
    on it now: another process's services may use the block a pid-based guess would give)."""
    for _ in range(200):
        lo = _port_block[0]
        _port_block[0] = lo + PORTS_PER_SERVICE if lo + 2 * PORTS_PER_SERVICE < 32768 else 20000
        if _block_is_free(lo, PORTS_PER_SERVICE):
            return lo, lo + PORTS_PER_SERVICE - 1
    raise RuntimeError("no free block of instance ports below 32768")


@dataclass
class ServiceProcess:
    base: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "info"
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
                "CLOUDMIG_LOG_LEVEL": self.log_level,
            }
        )
        env.pop("CLOUDMIG_CONFIG", None)  # the service's settings are these, not a user's file
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

    def start(self, timeout: float = 60) -> ServiceProcess:
        self.base.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        out = open(self.base / f"serve-{self.runs}.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloudmig", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
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
        from cloudmig.harness.source import DEFAULT_MAJOR
        from cloudmig.instances.provider import LocalInstanceProvider
        from cloudmig.settings import Settings

        settings = Settings(data_dir=self.data_dir, runtime_dir=self.runtime_dir)
        provider = LocalInstanceProvider(settings)
        for inst_dir in sorted((self.data_dir / "instances").glob("pgm-*")):
            version_file = inst_dir / "pgdata" / "PG_VERSION"
            version = int(version_file.read_text().strip()) if version_file.exists() else DEFAULT_MAJOR
            with contextlib.suppress(Exception):  # best effort at teardown
                provider.stop(inst_dir.name, version)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.base.glob("serve-*.out")))
