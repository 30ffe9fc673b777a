"""Console session cookies: signed, expiring, tamper-evident; CSRF token comparison."""

from __future__ import annotations

from cloudmig.console.charts import lag_chart
from cloudmig.console.history import Point
from cloudmig.console.session import SessionSigner, tokens_match


def test_a_session_cookie_round_trips_and_resists_tampering() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_seconds=60)
    cookie, session = signer.issue("LTAIabc", now=1000.0)
    got = signer.verify(cookie, now=1010.0)
    assert got == session and got.key_id == "LTAIabc" and len(got.csrf) >= 24
    payload, mac = cookie.split(".")
    assert signer.verify(payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"), now=1010.0) is None
    other, _ = SessionSigner(b"x" * 32, 60).issue("LTAIabc", now=1000.0)
    assert signer.verify(other, now=1010.0) is None  # another service key
    assert signer.verify(cookie, now=1061.0) is None  # expired
    for junk in (None, "", "a.b.c", "no-dot", "e30.AAAA"):
        assert signer.verify(junk, now=1010.0) is None


def test_csrf_tokens_must_match_exactly() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("abc", None)
    assert not tokens_match(None, "abc")
    assert not tokens_match("", "")


def test_the_lag_chart_is_plain_svg() -> None:
    empty = str(lag_chart([]))
    assert empty.startswith("<svg") and "waiting for replication samples" in empty
    svg = str(lag_chart([Point(100.0, 0, 0.0), Point(102.0, 3 * 1024 * 1024, 1.5), Point(104.0, 0, 0.0)]))
    assert svg.count("<polyline") == 1 and "5.0 MiB" in svg  # y axis rounded up to a nice maximum
    assert "<script" not in svg and "style=" not in svg
