"""An HTTP request as the RPC protocol sees it, and its parameters: the query string (form
semantics) and an `application/x-www-form-urlencoded` body, each name at most once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from cloudmig import errors

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class IncomingRequest:
    """One HTTP request as the protocol layer sees it.

    ``query``: decoded with form semantics (``+`` → space), blank values kept, order as received
    (`decode_query` does this). ``headers``: lower-cased names; a repeated header joined with ``,``.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    content_type: str


def decode_query(raw: bytes | str) -> list[tuple[str, str]]:
    """Decode a raw URL query string the way `IncomingRequest.query` expects it."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")


def _is_form(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == FORM_CONTENT_TYPE


def _form_charset_ok(content_type: str) -> bool:
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _bad_body(reason: str) -> errors.InvalidParameter:
    return errors.InvalidParameter("Body", reason)


def _form_fields(req: IncomingRequest) -> list[tuple[str, str]]:
    """Fields of an ``application/x-www-form-urlencoded`` body; other bodies carry no parameters."""
    if not req.body or not _is_form(req.content_type):
        return []
    if not _form_charset_ok(req.content_type):
        raise _bad_body("Form data must be UTF-8 encoded.")
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_body("Form data must be UTF-8 encoded.") from None
    fields: list[tuple[str, str]] = []
    for field in text.split("&"):
        if not field:
            continue
        name, eq, value = field.partition("=")
        if not eq:
            raise _bad_body("It is not valid form data (a field has no '=').")
        try:
            fields.append((unquote_plus(name, errors="strict"), unquote_plus(value, errors="strict")))
        except UnicodeDecodeError:
            raise _bad_body("Form data must be UTF-8 encoded.") from None
    return fields


def _merge(pairs: Iterable[tuple[str, str]], into: dict[str, str]) -> None:
    for name, value in pairs:
        if name in into:
            raise errors.InvalidParameter(name, "It is given more than once.")
        into[name] = value


def parse_params(req: IncomingRequest) -> dict[str, str]:
    """Query plus form-body parameters; a name given twice (anywhere) is InvalidParameter."""
    params: dict[str, str] = {}
    _merge(req.query, params)
    _merge(_form_fields(req), params)
    return params


def normalize_format(value: str | None) -> str:
    # Format is compared case-insensitively (tea sends "json", core "JSON"); anything but XML is JSON.
    return "XML" if value is not None and value.strip().upper() == "XML" else "JSON"


def peek_format(req: IncomingRequest) -> str:
    """The response format the caller asked for, best effort; never raises (for pre-auth errors)."""
    try:
        for name, value in req.query:
            if name == "Format":
                return normalize_format(value)
        for name, value in _form_fields(req):
            if name == "Format":
                return normalize_format(value)
    except Exception:  # best effort by contract
        return "JSON"
    return "JSON"
