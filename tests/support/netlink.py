"""A rate-limited network link to a PostgreSQL source: a network namespace of our own, a veth pair
into it, `tc tbf` on both ends, and a source cluster started inside the namespace.

    with RateLimitedLink.create(rate_mbit=100) as link:     # raises NetnsUnavailable where it cannot
        src = start_source_in(link, base_dir)               # listens on link.ns_addr only
        ...                                                  # reach it at link.ns_addr:src.port

Addresses are taken from a 10.214.x.0/30 subnet no route of the host uses, and exist only on the
two veth ends; everything is removed on exit (deleting the namespace removes its veth end and with
it the host end). Used by the func tests (tests/func/test_compression*.py) and the WAN benchmark.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.pgcluster import SourceCluster

_serial = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Network namespaces, veth pairs or tc cannot be used here (not root, no permission, no tools)."""


def _run(*argv: str) -> str:
    try:
        out = subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=20)
    except FileNotFoundError as exc:
        raise NetnsUnavailable(f"{argv[0]} is not installed (Debian package iproute2)") from exc
    except subprocess.CalledProcessError as exc:
        raise NetnsUnavailable(f"{' '.join(argv)}: {exc.stderr.strip()}") from exc
    return out.stdout


def _used_subnets() -> list[ipaddress.IPv4Network]:
    routes = json.loads(_run("ip", "-j", "route", "show") or "[]")
    nets = []
    for r in routes:
        dst = r.get("dst", "default")
        if dst != "default":
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                nets.append(net)
    return nets


def _tbf(rate_mbit: float) -> list[str]:
    # burst: at least one rate-second / 250 (the kernel's timer granularity) and 32 kB; the queue
    # (latency) holds 50 ms of traffic, enough for TCP to fill the link without a long standing queue.
    rate_bits = int(rate_mbit * 1_000_000)
    burst = max(rate_bits // 8 // 250, 32 * 1024)
    return ["tbf", "rate", f"{rate_bits}bit", "burst", str(burst), "latency", "50ms"]


@dataclass
class RateLimitedLink:
    """The namespace `ns`, the host end `host_if` (address `host_addr`) and the namespace end
    `ns_if` (address `ns_addr`); `rate_mbit` None means no tc limit (the veth's own speed)."""

    ns: str
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str
    rate_mbit: float | None

    @classmethod
    @contextlib.contextmanager
    def create(cls, rate_mbit: float | None, *, tag: str | None = None) -> Iterator[RateLimitedLink]:
        if os.geteuid() != 0:
            raise NetnsUnavailable("creating a network namespace and a veth pair needs root")
        # Interface names have at most 15 characters; unique per process and per link.
        tag = (tag or f"{os.getpid() % 100000}{next(_serial) % 1000:03d}")[-8:]
        ns, host_if, ns_if = f"cmwan{tag}", f"cmwh{tag}", f"cmwn{tag}"
        used = _used_subnets()
        start = os.getpid() % 200
        subnet = next(
            (
                net
                for i in range(start * 64, 256 * 64)
                for net in [ipaddress.IPv4Network(f"10.214.{i // 64}.{(i % 64) * 4}/30")]
                if not any(net.overlaps(u) for u in used)
            ),
            None,
        )
        if subnet is None:
            raise NetnsUnavailable("no free 10.214.x.y/30 subnet for the veth pair")
        host_addr, ns_addr = (str(h) for h in subnet.hosts())
        link = cls(ns, host_if, ns_if, host_addr, ns_addr, rate_mbit)
        _run("ip", "netns", "add", ns)  # fails if the name is taken: then nothing here is ours
        try:
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _run("ip", "link", "set", ns_if, "netns", ns)
            _run("ip", "addr", "add", f"{host_addr}/30", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            link.ns_exec("ip", "addr", "add", f"{ns_addr}/30", "dev", ns_if)
            link.ns_exec("ip", "link", "set", ns_if, "up")
            link.ns_exec("ip", "link", "set", "lo", "up")
            if rate_mbit is not None:
                link.set_rate(rate_mbit)
            route = _run("ip", "route", "get", ns_addr)
            if f"dev {host_if}" not in route:  # never send anything anywhere else
                raise NetnsUnavailable(f"{ns_addr} is not routed through {host_if}: {route.strip()}")
            yield link
        finally:
            link.destroy()

    def ns_exec(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.ns, *argv)

    def set_rate(self, rate_mbit: float) -> None:
        """(Re)limit both directions: the source's sends leave through ns_if, the acks through host_if."""
        self.ns_exec("tc", "qdisc", "replace", "dev", self.ns_if, "root", *_tbf(rate_mbit))
        _run("tc", "qdisc", "replace", "dev", self.host_if, "root", *_tbf(rate_mbit))
        self.rate_mbit = rate_mbit

    def host_rx_bytes(self) -> int:
        """Bytes received by the host end so far (what came from the source over the link)."""
        return int(Path(f"/sys/class/net/{self.host_if}/statistics/rx_bytes").read_text())

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)


def start_source_in(
    link: RateLimitedLink,
    base_dir: Path,
    *,
    settings: dict[str, Any] | None = None,
    major: int | None = None,
) -> SourceCluster:
    """initdb a source cluster whose postmaster runs inside the link's namespace and listens on the
    namespace address only; its Unix socket (a file) stays reachable from the host for setup. Of the
    distribution's major by default: Debian builds it with lz4 and zstd, which the npm builds of
    other majors lack (on Debian 13 a source of 15 would copy uncompressed)."""
    src = SourceCluster.create(base_dir, major=major, start=False, settings=settings)
    src.host = link.ns_addr
    try:
        src._write_conf()  # listen_addresses = the namespace address
        src.set_hba(
            (
                "local all all trust",
                "local replication all trust",
                f"host all all {link.host_addr}/32 scram-sha-256",
                f"host replication all {link.host_addr}/32 scram-sha-256",
            ),
            reload=False,
        )
        start_in_namespace(link, src)
    except BaseException:
        src.destroy()
        raise
    return src


def start_in_namespace(link: RateLimitedLink, src: SourceCluster) -> None:
    """pg_ctl start inside the namespace, as the PostgreSQL OS user (setpriv drops root after the
    namespace is entered; the postmaster pg_ctl forks stays in it)."""
    argv = ["ip", "netns", "exec", link.ns]
    if src.user is not None:
        argv += ["setpriv", f"--reuid={src.user.uid}", f"--regid={src.user.gid}", "--clear-groups"]
    argv += [
        os.fspath(src.bin_dir / "pg_ctl"),
        "start",
        "-D",
        os.fspath(src.pgdata),
        "-l",
        os.fspath(src.logfile),
        "-w",
        "-t",
        "60",
    ]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if src.user is not None:
        env["HOME"] = os.fspath(src.user.home)
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=src.root, timeout=90, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_ctl start in {link.ns} failed: {proc.stderr}\n{src.log_text()[-2000:]}")
