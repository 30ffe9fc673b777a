"""`migrate watch`: a live view of one migration task, or plain lines when stdout is not a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cloudmig.cli.output import EXIT_FAILED, EXIT_OK, human_rate, human_seconds
from cloudmig.domain.enums import STAGE_ORDER
from cloudmig.domain.switchover import describe_data_loss
from cloudmig.domain.units import human_bytes

STAGES = [s.value for s in STAGE_ORDER]
DETAIL_LINES = 8

Fetch = Callable[[], dict[str, Any]]


def stage_of(item: dict[str, Any]) -> str:
    return str(item.get("MigrateStage") or "precheck")


def status_of(item: dict[str, Any]) -> str:
    status = item.get("Status")
    if status:
        return str(status)
    # A service without the extension fields: Detail still says when a task failed.
    return "failed" if "[Task failed]" in str(item.get("Detail") or "") else "running"


def reached(item: dict[str, Any], until: str) -> bool:
    """Whether the task reached `until`: `streaming` (increment/streaming) or `end` (done either way)."""
    if status_of(item) != "running":
        return True
    if until == "streaming":
        return stage_of(item) in ("increment", "switch", "success") and (
            stage_of(item) != "increment" or item.get("ReplicationState") == "streaming"
        )
    return False


def exit_code_for(item: dict[str, Any]) -> int:
    return EXIT_OK if status_of(item) in ("running", "succeeded") else EXIT_FAILED


def detail_tail(item: dict[str, Any], n: int = DETAIL_LINES) -> list[str]:
    lines = [ln for ln in str(item.get("Detail") or "").splitlines() if " --- " in ln]
    return lines[-n:]


def _progress(item: dict[str, Any], part: str) -> dict[str, Any]:
    p = item.get("Progress") or {}
    v = p.get(part) if isinstance(p, dict) else None
    return v if isinstance(v, dict) else {}


# ---- the rich view ------------------------------------------------------------------------------------


def timeline(item: dict[str, Any]) -> Text:
    stage, status = stage_of(item), status_of(item)
    idx = STAGES.index(stage) if stage in STAGES else 0
    out = Text()
    for i, name in enumerate(STAGES):
        if i:
            out.append(" ─ ", style="dim")
        if status == "succeeded" or i < idx:
            out.append(f"✓ {name}", style="green")
        elif i == idx:
            style, mark = ("bold red", "✗") if status in ("failed", "cancelled") else ("bold yellow", "●")
            out.append(f"{mark} {name}", style=style)
        else:
            out.append(f"○ {name}", style="dim")
    return out


def copy_block(item: dict[str, Any]) -> RenderableType:
    bb = _progress(item, "BaseBackup")
    done, total = int(bb.get("BytesDone") or 0), int(bb.get("BytesTotal") or 0)
    if not bb:
        return Text("full copy: not started", style="dim")
    pct = 100.0 * done / total if total else 0.0
    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    grid.add_column(no_wrap=True)
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=min(done, max(total, 1)), width=40),
        f"{pct:5.1f}%  {human_bytes(done)} of {human_bytes(total)}",
    )
    grid.add_row(
        Text(f"full copy ({bb.get('Phase', '-')})", style="dim"),
        f"{human_rate(bb.get('RateBytesPerSecond'))}  ETA {human_seconds(bb.get('EtaSeconds'))}"
        f"  elapsed {human_seconds(bb.get('ElapsedSeconds'))}",
    )
    wire = compression_text(bb)
    if wire:
        grid.add_row(Text("compression", style="dim"), wire)
    return grid


def compression_text(bb: dict[str, Any]) -> str:
    """The copy's compression and bytes on the wire beside bytes on disk (issue 13), or ""."""
    if not bb.get("Compression"):
        return ""
    text = f"{bb['Compression']} ({bb.get('CompressionRequested', '-')})"
    if bb.get("WireBytes") is not None:
        text += (
            f"  wire {human_bytes(bb['WireBytes'])} at {human_rate(bb.get('WireRateBytesPerSecond'))}"
            f"  disk {human_bytes(bb.get('BytesDone'))}  ratio {bb.get('CompressionRatio', '-')}"
        )
    return text


def _evidence(item: dict[str, Any]) -> dict[str, Any]:
    ev = item.get("Evidence")
    return ev if isinstance(ev, dict) else {}


def data_loss_text(item: dict[str, Any]) -> str | None:
    """What the new primary is known to miss (the DataLoss extension field), or None."""
    text = describe_data_loss(item.get("DataLoss"))
    return None if text is None else f"DATA LOSS: {text}"


def status_label(item: dict[str, Any]) -> tuple[str, str]:
    """The status as the header shows it, and its colour: a switchover that lost writes is not green."""
    status = status_of(item)
    if status == "succeeded" and data_loss_text(item):
        return "succeeded with DATA LOSS", "bold red"
    return status, {"running": "yellow", "succeeded": "green"}.get(status, "red")


def switchover_summary(item: dict[str, Any]) -> str | None:
    """Where a finished switchover cut and promoted, from the task's evidence; None before one."""
    ev = _evidence(item)
    if status_of(item) != "succeeded" or not ev:
        return None
    lost = ev.get("BytesNotReplayed")
    return (
        f"cut at {ev.get('CutLsn') or '-'}, replayed {ev.get('ReplayLsnAtPromote') or '-'} at promotion, "
        f"not replayed: {'unknown (source unreachable)' if lost is None else human_bytes(lost)}"
    )


def replication_block(item: dict[str, Any]) -> RenderableType:
    r = _progress(item, "Replication")
    if not r:
        return Text(f"replication: {item.get('ReplicationState', 'unstarted')}", style="dim")
    t = Table.grid(padding=(0, 2))
    for _ in range(4):
        t.add_column()
    state = str(item.get("ReplicationState", "-"))
    if status_of(item) != "running":
        # A finished task has no rates or lag any more: where it ended is what counts.
        done = switchover_summary(item)
        if done:
            t.add_row("state", state, "switchover", done)
        else:
            t.add_row("state", state, "last source LSN", str(r.get("SourceLsn") or "-"))
            t.add_row("", "", "last replayed LSN", str(r.get("ReplayedLsn") or "-"))
        return t
    t.add_row("state", state, "source LSN", str(r.get("SourceLsn") or "-"))
    t.add_row(
        "lag", f"{human_bytes(r.get('LagBytes'))} / {human_seconds(r.get('LagSeconds'))}",
        "received LSN", str(r.get("ReceivedLsn") or "-"),
    )  # fmt: skip
    t.add_row(
        "WAL generated", human_rate(r.get("WalGenerationBytesPerSecond")),
        "replayed LSN", str(r.get("ReplayedLsn") or "-"),
    )  # fmt: skip
    t.add_row(
        "replayed", human_rate(r.get("ReplayBytesPerSecond")),
        "catch-up in", human_seconds(r.get("CatchUpSeconds")),
    )  # fmt: skip
    return t


def render_view(item: dict[str, Any], instance_id: str) -> RenderableType:
    status, colour = status_label(item)
    head = Text()
    head.append(f"task {item.get('TaskId')} {item.get('TaskName', '')}", style="bold")
    head.append(f"  on {instance_id}  ")
    head.append(status, style=colour)
    if item.get("Reason"):
        head.append(f"  {item['Reason']}", style="red")
    if item.get("Warning"):
        head.append(f"\nwarning: {item['Warning']}", style="yellow")
    detail = Text("\n".join(detail_tail(item)) or "(no events yet)", style="dim")
    return Group(
        head,
        timeline(item),
        Panel(copy_block(item), title="full copy", title_align="left"),
        Panel(replication_block(item), title="replication", title_align="left"),
        Panel(detail, title="last events", title_align="left"),
    )


# ---- plain lines --------------------------------------------------------------------------------------


@dataclass
class PlainPrinter:
    """Prints what changed: stage and state moves, new Detail lines, and progress every `every` s."""

    out: TextIO
    every: float = 10.0
    _last_key: tuple[str, str, str] | None = None
    _seen_detail: list[str] = field(default_factory=list)
    _last_progress: float = 0.0
    _last_line: str = ""

    def _emit(self, text: str) -> None:
        self.out.write(f"{datetime.now().strftime('%H:%M:%S')} {text}\n")
        self.out.flush()

    def update(self, item: dict[str, Any], *, final: bool = False) -> None:
        key = (stage_of(item), str(item.get("ReplicationState", "")), status_of(item))
        for line in detail_tail(item, 1000):
            if line not in self._seen_detail:
                self._seen_detail.append(line)
                self.out.write(f"  | {line}\n")
        now = time.monotonic()
        changed = key != self._last_key
        if changed:
            self._emit(f"stage {key[0]}  replication {key[1]}  status {status_label(item)[0]}")
            self._last_key = key
            loss = data_loss_text(item)
            if loss:
                self._emit(loss)
        if changed or final or now - self._last_progress >= self.every:
            self._last_progress = now
            line = progress_line(item)
            if line and line != self._last_line:
                self._emit(line)
                self._last_line = line
        self.out.flush()


def progress_line(item: dict[str, Any]) -> str:
    stage = stage_of(item)
    bb, r = _progress(item, "BaseBackup"), _progress(item, "Replication")
    if stage == "basebackup" and bb:
        done, total = int(bb.get("BytesDone") or 0), int(bb.get("BytesTotal") or 0)
        pct = 100.0 * done / total if total else 0.0
        return (
            f"copy {human_bytes(done)} of {human_bytes(total)} ({pct:.0f}%)  "
            f"{human_rate(bb.get('RateBytesPerSecond'))}  ETA {human_seconds(bb.get('EtaSeconds'))}"
        )
    if r and stage in ("startup", "increment", "switch") and status_of(item) == "running":
        return (
            f"lag {human_bytes(r.get('LagBytes'))} ({human_seconds(r.get('LagSeconds'))})  "
            f"replayed {r.get('ReplayedLsn') or '-'} of {r.get('SourceLsn') or '-'}  "
            f"catch-up {human_seconds(r.get('CatchUpSeconds'))}"
        )
    return ""


# ---- the loop -----------------------------------------------------------------------------------------


def watch(
    fetch: Fetch,
    instance_id: str,
    *,
    until: str = "end",
    interval: float = 1.0,
    timeout: float | None = None,
    out: TextIO | None = None,
    live: bool | None = None,
    printer: PlainPrinter | None = None,
) -> tuple[int, dict[str, Any]]:
    """Poll `fetch` until the task ends (or reaches `until`); returns the exit code and the last item.
    A `printer` carried over from an earlier watch does not repeat the lines it printed."""
    stream = out or sys.stdout
    use_live = stream.isatty() if live is None else live
    deadline = None if timeout is None else time.monotonic() + timeout
    item = fetch()
    if use_live:
        from rich.live import Live

        console = Console(file=stream)
        with Live(render_view(item, instance_id), console=console, refresh_per_second=4) as view:
            while not reached(item, until) and not _expired(deadline):
                time.sleep(interval)
                item = fetch()
                view.update(render_view(item, instance_id))
            item = _last_look(fetch, item, until, interval)
            view.update(render_view(item, instance_id), refresh=True)
    else:
        printer = printer or PlainPrinter(stream)
        printer.update(item)
        while not reached(item, until) and not _expired(deadline):
            time.sleep(interval)
            item = fetch()
            printer.update(item)
        item = _last_look(fetch, item, until, interval)
        printer.update(item, final=True)
    if not reached(item, until):
        return EXIT_FAILED, item  # timed out: the caller says so
    return exit_code_for(item), item


def _last_look(fetch: Fetch, item: dict[str, Any], until: str, interval: float) -> dict[str, Any]:
    """One more sample before exiting on a task that runs on (reached `streaming`): the sample that
    reached it may carry the lag and LSNs of the observation before, while its event says caught up."""
    if not reached(item, until) or status_of(item) != "running":
        return item
    time.sleep(interval)
    return fetch()


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def failed_checks(item: dict[str, Any]) -> list[str]:
    """The assessment's errors of a task, one line each."""
    out = []
    for c in item.get("CheckResults") or []:
        if isinstance(c, dict) and c.get("Level") == "error":
            out.append(f"[{c.get('Section')}] {c.get('Name')}: {c.get('Message') or 'error'}")
    return out


def failure_report(item: dict[str, Any], instance_id: str) -> list[str]:
    """What a person needs when a watched task failed: why, the failing checks, where to look next."""
    if status_of(item) not in ("failed", "cancelled"):
        return []
    tid = item.get("TaskId")
    lines = [
        f"task {tid} {status_of(item)} in stage {stage_of(item)}: {item.get('Reason') or 'no reason given'}"
    ]
    checks = failed_checks(item)
    if checks:
        lines.append(f"the assessment found {len(checks)} error(s):")
        lines += [f"  {c}" for c in checks]
    lines.append(f"details and events: cloudmig migrate show {instance_id} --task-id {tid}")
    return lines


def summary_rows(item: dict[str, Any]) -> Sequence[tuple[str, Any]]:
    bb, r = _progress(item, "BaseBackup"), _progress(item, "Replication")
    rows: list[tuple[str, Any]] = [
        ("Task", f"{item.get('TaskId')} {item.get('TaskName', '')}"),
        ("Instance", item.get("TargetInstanceName")),
        ("Source", f"{item.get('SourceAccount')}@{item.get('SourceIpAddress')}:{item.get('SourcePort')}"),
        ("Status", status_label(item)[0]),
        ("Stage", stage_of(item)),
        ("Replication", item.get("ReplicationState")),
    ]
    if item.get("Reason"):
        rows.append(("Reason", item["Reason"]))
    loss = data_loss_text(item)
    if loss:
        rows.append(("Data loss", loss))
    if item.get("Warning"):
        rows.append(("Warning", item["Warning"]))
    if bb:
        rows.append(
            (
                "Full copy",
                f"{human_bytes(bb.get('BytesDone'))} of {human_bytes(bb.get('BytesTotal'))} "
                f"({bb.get('Phase')}), {human_rate(bb.get('RateBytesPerSecond'))}, "
                f"ETA {human_seconds(bb.get('EtaSeconds'))}",
            )
        )
        if compression_text(bb):
            rows.append(("Compression", f"{compression_text(bb)}; {bb.get('CompressionReason', '')}"))
    done = switchover_summary(item)
    if done:
        rows.append(("Switchover", done))
    elif r and status_of(item) == "running":
        rows.append(
            (
                "Lag",
                f"{human_bytes(r.get('LagBytes'))} / {human_seconds(r.get('LagSeconds'))}, "
                f"replayed {r.get('ReplayedLsn') or '-'} of {r.get('SourceLsn') or '-'}",
            )
        )
    if item.get("SwitchTime"):
        rows.append(("Switch time", item["SwitchTime"]))
    rows.append(("Created", item.get("GmtCreated")))
    rows.append(("Modified", item.get("GmtModified")))
    return rows
