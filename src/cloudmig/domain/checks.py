"""Assessment results and their rendering in the RDS report format (spec/assessment.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloudmig.domain.enums import CheckLevel

# The line that stands for the sub-checks a failed connection left unevaluated.
DEPENDENT_CHECKS = "Dependent checks"


@dataclass(frozen=True)
class CheckResult:
    section: str
    name: str
    level: CheckLevel
    message: str = ""
    # For a sub-check skipped because an earlier one failed: the name of that one. The report
    # collapses such sub-checks into one line; the machine-readable list keeps each of them.
    depends_on: str = ""

    def line(self) -> str:
        if self.level is CheckLevel.SUCCESS:
            return f"{self.name}: success"
        return f"{self.name}: {self.level.value}({self.level.value}:{self.message})"

    def as_dict(self) -> dict[str, str]:
        d = {
            "Section": self.section,
            "Name": self.name,
            "Level": self.level.value,
            "Message": self.message,
        }
        if self.depends_on:
            d["DependsOn"] = self.depends_on
        return d

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> CheckResult:
        return cls(
            d["Section"], d["Name"], CheckLevel(d["Level"]), d.get("Message", ""), d.get("DependsOn", "")
        )


def passed(results: Iterable[CheckResult]) -> bool:
    return all(r.level is not CheckLevel.ERROR for r in results)


def _dependents_line(failed: CheckResult, dependents: Sequence[CheckResult]) -> CheckResult:
    reason = dependents[0].message
    reason = reason.removeprefix("skipped, ") if len({d.message for d in dependents}) == 1 else ""
    count = f"{len(dependents)} sub-check{'s' if len(dependents) != 1 else ''} not run"
    text = f"{reason} ({count}, they need {failed.name})" if reason else f"{count}, they need {failed.name}"
    return CheckResult(failed.section, DEPENDENT_CHECKS, CheckLevel.ERROR, f"skipped, {text}")


def report_lines(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The results as the report shows them: sub-checks skipped because of a failed one collapse
    into one `Dependent checks` line right after it (in its section)."""
    present = {r.name for r in results}
    dependents: dict[str, list[CheckResult]] = {}
    for r in results:
        if r.depends_on and r.depends_on in present:
            dependents.setdefault(r.depends_on, []).append(r)
    shown: list[CheckResult] = []
    for r in results:
        if r.depends_on and r.depends_on in present:
            continue
        shown.append(r)
        if r.name in dependents:
            shown.append(_dependents_line(r, dependents[r.name]))
    return shown


def render_report(results: Sequence[CheckResult]) -> str:
    """Section headings in first-seen order, one line per sub-check (dependent ones collapsed), then
    the summary line."""
    lines: list[str] = []
    section = None
    for r in report_lines(results):
        if r.section != section:
            lines.append(f"[{r.section}]")
            section = r.section
        lines.append(r.line())
    lines.append("*Migrate check success*" if passed(results) else "*Migrate check failed*")
    return "\n".join(lines) + "\n"
