"""matplotlib PNGs for docs/benchmarks.md: bytes over time per copy method, lag over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import Result, log

MIB = 1024 * 1024
COLORS = {
    "cloudmig": "tab:blue",
    "pg_basebackup": "tab:green",
    "pgcopydb": "tab:orange",
    "pg_dump": "tab:red",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def copy_bytes(res: Result, path: Path, machine: str) -> Path | None:
    from bench.fullcopy import LABELS

    series = res.series.get("bytes") or {}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    for method, pts in series.items():
        if not pts:
            continue
        xs = [t for t, _ in pts]
        ys = [b / MIB for _, b in pts]
        ax.plot(xs, ys, label=LABELS.get(method, method), color=COLORS.get(method), linewidth=1.8)
    api = res.series.get("api_bytes") or []
    if api:
        ax.plot(
            [t for t, _ in api],
            [b / MIB for _, b in api],
            linestyle=":",
            marker=".",
            color=COLORS["cloudmig"],
            label="cloudmig, BytesDone shown by the API",
        )
    stages = res.series.get("stages") or []
    cm = series.get("cloudmig") or []
    if stages and cm:
        for t, stage, state in stages:
            ax.axvline(t, color=COLORS["cloudmig"], alpha=0.25, linestyle="--", linewidth=1)
            ax.text(
                t,
                0.03,
                f"cloudmig {stage}" + ("/" + state if stage == "increment" else ""),
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                color=COLORS["cloudmig"],
                rotation=90,
                va="bottom",
                ha="right",
            )
    ax.set_xlabel("seconds since the start of the copy (cloudmig: since CreateCloudMigrationTask)")
    ax.set_ylabel("MiB on the target's disk")
    scale = res.params.get("pgbench_scale")
    ax.set_title(f"Full copy of a pgbench scale {scale} database (median repetition)\n{machine}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def catchup_lag(res: Result, path: Path, machine: str) -> Path | None:
    s = res.series.get("lag")
    if not s:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), dpi=110, sharex=True)
    truth = s["truth"]
    t = [r[0] for r in truth]

    def col(i: int, scale: float = 1.0) -> list[float | None]:
        return [None if r[i] is None else r[i] / scale for r in truth]

    ax1.plot(t, col(3, MIB), color="tab:gray", linewidth=1, label="WAL held by the task's slot (source)")
    ax1.plot(t, col(1, MIB), color="black", linewidth=1.6, label="true lag: source LSN - target replay LSN")
    ax1.plot(
        t,
        col(2, MIB),
        color="tab:green",
        linewidth=1,
        linestyle="--",
        label="pg_stat_replication: current - replay_lsn",
    )
    api = [r for r in s["api"] if r[2] is not None and r[1] is not None]
    # What a client reading Describe saw, at the moment it read it.
    ax1.step(
        [r[0] for r in api],
        [r[2] / MIB for r in api],
        where="post",
        color="tab:blue",
        label="cloudmig API: Progress.Replication.LagBytes (when read)",
    )
    ax1.scatter(
        [r[1] for r in api],
        [r[2] / MIB for r in api],
        s=10,
        color="tab:blue",
        zorder=3,
        label="… placed at its ObservedAt",
    )
    ax1.set_ylabel("lag, MiB")
    ax1.set_yscale("symlog", linthresh=0.05)
    ax1.legend(fontsize=7, loc="upper right")
    ax1.grid(True, alpha=0.3)
    delay = [None if (x is None or tt > s["t_load_stop"]) else x for tt, x in zip(t, col(4), strict=True)]
    ax2.plot(t, delay, color="black", linewidth=1.4, label="target replay delay: now - last replayed commit")
    ax2.plot(
        t, col(5), color="tab:green", linestyle="--", linewidth=1, label="pg_stat_replication.replay_lag"
    )
    api_s = [r for r in s["api"] if r[3] is not None]
    ax2.step(
        [r[0] for r in api_s],
        [r[3] for r in api_s],
        where="post",
        color="tab:blue",
        label="cloudmig API: Progress.Replication.LagSeconds",
    )
    ax2.set_ylabel("lag, seconds")
    ax2.set_xlabel("seconds since CreateCloudMigrationTask")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=7, loc="upper right")
    for ax in (ax1, ax2):
        for tt, _stage, _state in s["transitions"]:
            ax.axvline(tt, color="tab:purple", alpha=0.25, linewidth=1)
        ax.axvline(s["t_load_stop"], color="tab:red", alpha=0.5, linestyle=":")
    for tt, stage, state in s["transitions"]:
        ax1.text(
            tt,
            0.03,
            f" {stage}/{state}",
            transform=ax1.get_xaxis_transform(),
            fontsize=7,
            rotation=90,
            va="bottom",
            ha="right",
            color="tab:purple",
        )
    ax2.text(
        s["t_load_stop"], 1.01, "load stops", transform=ax2.get_xaxis_transform(), fontsize=7, color="tab:red"
    )
    fig.suptitle(f"Lag under pgbench load: what cloudmig reports vs the truth\n{machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def make_all(results: dict[str, Result], out_dir: Path, machine: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    try:
        _plt()
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
        return made
    for name, fn, file in (
        ("copy", copy_bytes, "copy-bytes.png"),
        ("catchup", catchup_lag, "catchup-lag.png"),
    ):
        r = results.get(name)
        if r is None or r.error or r.skipped:
            continue
        try:
            p = fn(r, out_dir / file, machine)
        except Exception as exc:
            log(f"plot {file} failed: {exc}")
            continue
        if p is not None:
            made.append(p)
    return made
