"""Exit codes, one-line errors, and `--output table|json` for the CLI's commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cloudmig.domain.units import human_bytes

# 0 = done; 1 = the request was refused (bad input, wrong state: changing the input may help);
# 2 = usage or configuration error; 3 = it failed (the service is unreachable, a task failed).
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


class CliError(Exception):
    """An error to print as one line; `exit_code` says what kind it is."""

    exit_code = EXIT_USAGE


class Refused(CliError):
    exit_code = EXIT_REFUSED


class Failed(CliError):
    exit_code = EXIT_FAILED


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", metavar="table|json", help="table (for people) or json (for programs)."),
]


def command_group(help_text: str, **kwargs: Any) -> typer.Typer:
    """A Typer app with plain (click) help: flags show no `<bool>` value and defaults are wrapped,
    not cut at the terminal's width as rich's help panels do."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, **kwargs)


P = ParamSpec("P")
R = TypeVar("R")


def die(message: str, code: int) -> NoReturn:
    """Print `error: message` (one line) on stderr and exit with `code`."""
    line = " ".join(message.split()) or "unknown error"
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn CliError (and Ctrl-C) into one line on stderr and the matching exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            die(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            die("interrupted", 130)

    return wrapper


def stdout_console() -> Console:
    # Wide enough that tables do not wrap when piped into a file or another program.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    stdout_console().print(table)


def print_fields(pairs: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in pairs:
        table.add_row(k, "" if v is None else str(v))
    stdout_console().print(table)


def human_seconds(s: float | int | None) -> str:
    if s is None:
        return "-"
    total = round(float(s))
    if total < 60:
        return f"{float(s):.0f}s" if total >= 10 else f"{float(s):.1f}s"
    h, rem = divmod(total, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def human_rate(n: float | int | None) -> str:
    return "-" if n is None else f"{human_bytes(n)}/s"
