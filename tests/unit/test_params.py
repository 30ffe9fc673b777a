"""Typed access to action parameters: every value arrives as a string."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudmig import errors
from cloudmig.api.actions.registry import Params


def p(**values: str) -> Params:
    return Params(values)


@pytest.mark.parametrize("text,expected", [("5432", 5432), (" 7 ", 7), ("+3", 3), ("0", 0), ("-1", -1)])
def test_integers_arrive_as_strings(text: str, expected: int) -> None:
    assert p(N=text).optional_int("N") == expected


@pytest.mark.parametrize(
    "text", ["1_000", "\u0663", "\uff15", "1e3", "1.0", "0x10", "abc", "1 2", "9" * 20, "--1"]
)
def test_only_ascii_integers_are_integers(text: str) -> None:
    with pytest.raises(errors.InvalidParameter) as info:
        p(N=text).optional_int("N")
    assert info.value.parameter == "N" and "integer" in info.value.message


def test_integer_bounds() -> None:
    assert p(N="65535").required_int("N", lo=1, hi=65535) == 65535
    for bad in ("0", "65536"):
        with pytest.raises(errors.InvalidParameter, match="between 1 and 65535"):
            p(N=bad).required_int("N", lo=1, hi=65535)
    with pytest.raises(errors.InvalidParameter, match="at least 0"):
        p(N="-5").optional_int("N", lo=0)


def test_missing_and_empty_values() -> None:
    assert p().optional_int("N") is None and p(N="").optional_int("N") is None
    assert p(N="  ").optional_int("N") is None
    with pytest.raises(errors.MissingParameter) as info:
        p(N="").required_int("N")
    assert info.value.message == (
        'The input parameter "N" that is mandatory for processing this request is not supplied.'
    )
    with pytest.raises(errors.MissingParameter):
        p().required_str("S")
    with pytest.raises(errors.MissingParameter):
        p(S="").secret("S")


def test_strings_reject_nul_and_oversize_but_keep_unicode() -> None:
    assert p(S="任务 ü €").required_str("S") == "任务 ü €"
    for bad in ("a\x00b", "x" * 65):
        with pytest.raises(errors.InvalidParameter):
            p(S=bad).required_str("S", max_len=64)
    with pytest.raises(errors.InvalidParameter):
        p(S="x" * 1025).secret("S")
    assert p(S="'; DROP TABLE tasks; --").secret("S") == "'; DROP TABLE tasks; --"


def test_secret_errors_never_echo_the_value() -> None:
    with pytest.raises(errors.InvalidParameter) as info:
        p(S="hunter2\x00").secret("S")
    assert "hunter2" not in info.value.message


def test_page_defaults_and_bounds() -> None:
    assert p().page() == (1, 30)
    assert p().page(default_size=10) == (1, 10)
    assert p(PageNumber="3", PageSize="100").page() == (3, 100)
    assert p(PageNumber="999999", PageSize="1").page() == (999999, 1)
    for name, value in [("PageSize", "0"), ("PageSize", "101"), ("PageNumber", "0"), ("PageSize", "x")]:
        with pytest.raises(errors.InvalidParameter) as info:
            p(**{name: value}).page()
        assert info.value.parameter == name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_optional_int_is_total(text: str) -> None:
    # Any text: an int, None or InvalidParameter; never another exception.
    try:
        n = p(N=text).optional_int("N", lo=0, hi=10**9)
    except errors.InvalidParameter:
        return
    assert n is None or 0 <= n <= 10**9
