"""Detail text of a task: the check report, then timestamped lines grouped by section (spec §2.4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Event:
    at: datetime  # aware, UTC
    section: str
    text: str


def render_events(events: Sequence[Event]) -> str:
    out: list[str] = []
    section = None
    for e in events:
        if e.section != section:
            out.append(f"[{e.section}]")
            section = e.section
        # RDS prints local wall-clock time of the service.
        out.append(f"{e.at.astimezone().strftime('%Y-%m-%d %H:%M:%S')} --- {e.text}")
    return "".join(line + "\n" for line in out)


def render_detail(report: str, events: Sequence[Event]) -> str:
    return report + render_events(events)


# Sections and texts of the migration's own lines; the first two are RDS's own words.
SECTION_START = "Start RDS instance"
TEXT_START = "Start RDS instance as slave for data replication"
SECTION_SYNC = "Synchronize data"
TEXT_SYNC = "Synchronize data from source to RDS by streaming replication "
SECTION_BACKUP = "Backup source data"
SECTION_SWITCH = "Switch over"
SECTION_FAILURE = "Task failed"
# A step that failed and is tried again: not "Task failed", which clients read as the task's end.
SECTION_RETRY = "Retrying"
SECTION_SLOTS = "Replication slot"
SECTION_HEALTH = "Health"
