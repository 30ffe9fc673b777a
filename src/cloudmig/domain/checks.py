"""Assessment results and their rendering in the RDS report format (spec/assessment.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloudmig.domain.enums import CheckLevel


@dataclass(frozen=True)
class CheckResult:
    section: str
    name: str
    level: CheckLevel
    message: str = ""

    def line(self) -> str:
        if self.level is CheckLevel.SUCCESS:
            return f"{self.name}: success"
        return f"{self.name}: {self.level.value}({self.level.value}:{self.message})"

    def as_dict(self) -> dict[str, str]:
        return {
            "Section": self.section,
            "Name": self.name,
            "Level": self.level.value,
            "Message": self.message,
        }

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> CheckResult:
        return cls(d["Section"], d["Name"], CheckLevel(d["Level"]), d.get("Message", ""))


def passed(results: Iterable[CheckResult]) -> bool:
    return all(r.level is not CheckLevel.ERROR for r in results)


def render_report(results: Sequence[CheckResult]) -> str:
    """Section headings in first-seen order, one line per sub-check, then the summary line."""
    lines: list[str] = []
    section = None
    for r in results:
        if r.section != section:
            lines.append(f"[{r.section}]")
            section = r.section
        lines.append(r.line())
    lines.append("*Migrate check success*" if passed(results) else "*Migrate check failed*")
    return "\n".join(lines) + "\n"
