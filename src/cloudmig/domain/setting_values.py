"""Comparing a configuration file's value of a setting with what the server runs with, as the server
would read it (units, spellings of booleans, case of enums and lists). Pure."""

from __future__ import annotations

import re

_MEMORY_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_TIME_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER_RE = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_BOOL_WORDS = {
    "on": True,
    "true": True,
    "yes": True,
    "1": True,
    "off": False,
    "false": False,
    "no": False,
    "0": False,
}


def _in_base_unit(text: str, unit: str) -> float | None:
    """A configuration value like '4MB' or '30s' in the setting's base unit (pg_settings.unit, e.g.
    'kB', '8kB', 'ms'), or None when it cannot be read."""
    match = _NUMBER_RE.match(text)
    base = re.match(r"^([0-9]*)([A-Za-z]+)$", unit)
    if match is None or base is None:
        return None
    number, suffix = float(match.group(1)), match.group(2).lower()
    scale = float(base.group(1) or 1)
    base_unit = base.group(2).lower()
    table = _MEMORY_UNITS if base_unit in _MEMORY_UNITS else _TIME_UNITS
    if base_unit not in table or (suffix and suffix not in table):
        return None
    factor = table[suffix] / (table[base_unit] * scale) if suffix else 1.0
    return number * factor


def differs_from_running(
    in_file: str, shown: str | None, raw: str | None, unit: str | None, vartype: str | None
) -> bool:
    """Whether a configuration file's value differs from what the server runs with (a reload or a
    restart pending). Units and spellings of booleans and enums are compared as the server would."""
    if shown is None or raw is None:
        return shown != in_file
    text = in_file.strip()
    if text in (shown, raw):
        return False
    if vartype == "bool":
        return _BOOL_WORDS.get(text.lower()) != _BOOL_WORDS.get(shown.lower())
    if vartype in ("integer", "real"):
        value = _in_base_unit(text, unit) if unit else None
        if value is None:
            try:
                value = float(text)
            except ValueError:
                return True
        return abs(value - float(raw)) > 1e-9 * max(1.0, abs(value))
    # Enums and lists like DateStyle are case-insensitive; for other strings a difference of case
    # alone is not worth a warning (the carried value is then the one the source runs with).
    return " ".join(text.lower().replace(",", ", ").split()) != " ".join(
        shown.lower().replace(",", ", ").split()
    )
