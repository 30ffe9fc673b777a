"""`python -m bench [--quick]`: run the benchmarks, write results (JSON + Markdown + PNGs) to
bench/out/, and with --docs update docs/benchmarks.md and docs/bench/*.png.

Goals are reported, never asserted: the exit status is non-zero only when a benchmark could not run
(an exception, a migration that failed, a timeout)."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    INSTANCE_FAILURES,
    REPO,
    MachineLoad,
    Mode,
    Result,
    jsonable,
    log,
    machine_info,
    result_from_dict,
)
from bench.report import MODULES, render_run, update_doc

ORDER = ("copy", "catchup", "switchover", "control", "concurrency", "wan")
SWITCHOVER_ACTION = REPO / "src" / "cloudmig" / "api" / "actions" / "switchover.py"
DOC = REPO / "docs" / "benchmarks.md"
DOC_PLOTS = REPO / "docs" / "bench"


def _git() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def _on_sigterm(signum: int, _frame: Any) -> None:
    # Turn SIGTERM into an exception so every benchmark's cleanup (clusters, services) still runs.
    raise SystemExit(128 + signum)


def _background_load(seconds: float) -> dict[str, Any]:
    with MachineLoad() as ml:
        time.sleep(seconds)
    d = ml.as_dict()
    return {
        "cpu_busy_pct": d["cpu_busy_pct"],
        "cpu_stolen_pct": d["cpu_stolen_pct"],
        "seconds": seconds,
        "loadavg": d["loadavg_start"],
    }


def run_one(name: str, mode: Mode) -> Result:
    mod = importlib.import_module(MODULES[name])
    if name == "switchover" and not SWITCHOVER_ACTION.exists():
        return Result(name, mod.TITLE, skipped="ActivateMigrationTargetInstance is not implemented yet")
    log(f"{name}: starting")
    t0 = time.monotonic()
    try:
        res: Result = mod.run(mode)
    except Exception:
        res = Result(name, mod.TITLE, error=traceback.format_exc())
        log(f"{name}: FAILED\n{res.error}")
    res.name = name
    res.seconds = time.monotonic() - t0
    log(f"{name}: done in {res.seconds:.0f} s")
    return res


def write_outputs(run: dict[str, Any], results: dict[str, Result], out: Path, docs: bool) -> str:
    from bench import plots

    out.mkdir(parents=True, exist_ok=True)
    tag = run["mode"]
    machine = f"{run['machine']['cpus']} x {run['machine']['cpu']}"
    made = plots.make_all(results, out / f"png-{tag}", machine)
    payload = {**run, "results": {k: asdict(v) for k, v in results.items()}}
    (out / f"results-{tag}.json").write_text(json.dumps(jsonable(payload), indent=1, ensure_ascii=False))
    text = render_run(run, results, f"png-{tag}")
    (out / f"report-{tag}.md").write_text(text)
    if docs:
        DOC_PLOTS.mkdir(parents=True, exist_ok=True)
        for p in made:
            shutil.copy(p, DOC_PLOTS / p.name)
        update_doc(DOC, render_run(run, results, "bench"))
        log(f"updated {DOC.relative_to(REPO)} and {len(made)} plot(s) in {DOC_PLOTS.relative_to(REPO)}")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small and few: a smoke check of about two minutes")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(ORDER)}")
    ap.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    ap.add_argument("--scale", type=int, help="pgbench scale of the full-copy benchmark")
    ap.add_argument("--repeats", type=int, help="repetitions of the full-copy benchmark (physical methods)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="results directory")
    ap.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update docs/benchmarks.md and docs/bench/*.png (default: yes for a full run of all)",
    )
    ap.add_argument("--note", default="", help="free text on the run's conditions, kept with the results")
    ap.add_argument("--from-json", type=Path, help="re-render a saved results file instead of running")
    args = ap.parse_args(argv)

    if args.from_json:
        payload = json.loads(args.from_json.read_text())
        results = {k: result_from_dict(v) for k, v in payload.pop("results").items()}
        print(write_outputs(payload, results, args.out, bool(args.docs)))
        return 0

    selected = [
        n for n in ORDER if (not args.only or n in args.only.split(",")) and n not in args.skip.split(",")
    ]
    unknown = set(filter(None, (args.only + "," + args.skip).split(","))) - set(ORDER)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    docs = args.docs if args.docs is not None else (not args.quick and len(selected) == len(ORDER))
    mode = Mode.make(args.quick, copy_scale=args.scale, copy_repeats=args.repeats)
    signal.signal(signal.SIGTERM, _on_sigterm)

    started = datetime.now(UTC)
    t0 = time.monotonic()
    machine = machine_info()
    background = _background_load(2.0 if args.quick else 5.0)
    log(
        f"bench ({'quick' if args.quick else 'full'}): {', '.join(selected)} on {machine['cpus']} CPUs, "
        f"{background['cpu_busy_pct']}% busy before starting"
    )
    results: dict[str, Result] = {}
    for name in selected:
        results[name] = run_one(name, mode)
    run = {
        "mode": "quick" if args.quick else "full",
        "argv": sys.argv[1:] if argv is None else argv,
        "started": started.isoformat(),
        "seconds": time.monotonic() - t0,
        "machine": machine,
        "background_load": background,
        "git": _git(),
        "note": args.note,
        "params": asdict(mode),
        "instance_failures": INSTANCE_FAILURES,
    }
    print(write_outputs(run, results, args.out, docs))
    failed = [n for n, r in results.items() if r.error]
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
