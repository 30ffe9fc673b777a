"""cloudmig-source.conf: the source's behaviour settings carried to the target (the plan is
domain/settings_carry.py), included from postgresql.conf right before cloudmig.conf so that
cloudmig's managed settings win over them. Works whether or not the copied data directory had its
own postgresql.conf (apply_managed_conf creates one when it had none, e.g. a Debian source)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from cloudmig.pg.conf import MANAGED_CONF, POSTGRESQL_CONF, conf_quote, setting_name
from cloudmig.pg.conf import _include_target as include_target  # the same parsing as for cloudmig.conf
from cloudmig.pg.files import atomic_write, write_if_changed
from cloudmig.pg.runner import OsUser

SOURCE_CONF = "cloudmig-source.conf"
SOURCE_INCLUDE_LINE = f"include = '{SOURCE_CONF}'"
# A setting name as a configuration file may carry it (extension settings have a dot).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$")


def render_source_conf(settings: Mapping[str, str]) -> str:
    """The file's text: one quoted value per carried setting."""
    lines = [
        "# Written by cloudmig: settings carried from the source's configuration files (see the",
        f"# assessment's Check settings carried). Included before {MANAGED_CONF}, whose settings win.",
    ]
    for name, value in sorted(settings.items(), key=lambda item: item[0].lower()):
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid setting name {name!r}")
        lines.append(f"{name} = {conf_quote(value)}")
    return "\n".join(lines) + "\n"


def _includes(line: str, target: str) -> bool:
    return setting_name(line) == "include" and include_target(line) == target


def include_source_conf(text: str) -> str:
    """postgresql.conf text with the include of cloudmig-source.conf right before the (last) include
    of cloudmig.conf; unchanged when it is already there."""
    lines = text.splitlines()
    if any(_includes(line, SOURCE_CONF) for line in lines):
        return text
    managed = [i for i, line in enumerate(lines) if _includes(line, MANAGED_CONF)]
    if not managed:
        raise ValueError(
            f"{POSTGRESQL_CONF} does not include {MANAGED_CONF}: apply the managed configuration first"
        )
    lines.insert(managed[-1], SOURCE_INCLUDE_LINE)
    return "\n".join(lines) + "\n"


def write_source_conf(pgdata: Path, settings: Mapping[str, str], *, user: OsUser | None) -> None:
    """Write pgdata/cloudmig-source.conf and include it (after apply_managed_conf). Safe to run
    again; the server must be (re)started to see the values."""
    atomic_write(pgdata / SOURCE_CONF, render_source_conf(settings), user=user)
    main = pgdata / POSTGRESQL_CONF
    write_if_changed(
        main, include_source_conf(main.read_text(encoding="utf-8", errors="surrogateescape")), user=user
    )
