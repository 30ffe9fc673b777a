"""Response side of the RDS OpenAPI: success bodies and the error envelope, as JSON or XML.

JSON is the default and the only format the SDKs' V1 paths can parse. The tea SDK's V3 path parses
an error as XML only when the content type is exactly ``text/xml;charset=utf-8`` (spec §6.1), so the
content types below are byte-exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from cloudmig import errors

JSON_CONTENT_TYPE = "application/json;charset=utf-8"
XML_CONTENT_TYPE = "text/xml;charset=utf-8"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
RECOMMEND_URL = "https://api.aliyun.com/troubleshoot?q={code}&product=Rds&requestId={request_id}"

_XML_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters XML 1.0 cannot carry at all (not even as references): C0 controls except TAB/LF/CR,
# surrogates, U+FFFE and U+FFFF. They are replaced by U+FFFD.
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _is_xml(fmt: str) -> bool:
    return fmt.strip().upper() == "XML"


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: let json escape it instead
        return json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _xml_text(value: str) -> str:
    value = _XML_INVALID_RE.sub("\ufffd", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _xml_name(name: str) -> str:
    if not _XML_NAME_RE.fullmatch(name) or name.lower().startswith("xml"):
        raise ValueError(f"{name!r} cannot be an XML element name")
    return name


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value, allow_nan=False)
    raise TypeError(f"cannot render {type(value).__name__} in a response")


def _xml_element(name: str, value: Any, out: list[str]) -> None:
    """Append ``<name>…</name>``; a list under ``name`` becomes repeated ``<name>`` elements."""
    tag = _xml_name(name)
    if isinstance(value, Mapping):
        out.append(f"<{tag}>")
        for key, child in value.items():
            _xml_element(str(key), child, out)
        out.append(f"</{tag}>")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        for item in value:
            _xml_element(tag, item, out)
    else:
        out.append(f"<{tag}>{_xml_text(_scalar(value))}</{tag}>")


def _xml_bytes(root: str, body: Mapping[str, Any]) -> bytes:
    out = [XML_DECLARATION]
    _xml_element(root, body, out)
    return "".join(out).encode("utf-8")


def render_success(action: str, body: Mapping[str, Any], fmt: str) -> tuple[bytes, str]:
    """Serialize a success body (the caller includes ``RequestId``) as ``(bytes, content_type)``.

    XML is rooted at ``<{action}Response>``; a list is rendered as repeated child elements named
    after the list's key, a nested mapping as an element, ``None`` as an empty element, booleans as
    ``true``/``false``.
    """
    if _is_xml(fmt):
        return _xml_bytes(f"{action}Response", body), XML_CONTENT_TYPE
    return _json_bytes(body), JSON_CONTENT_TYPE


def recommend_url(code: str, request_id: str) -> str:
    return RECOMMEND_URL.format(code=quote(code, safe=""), request_id=quote(request_id, safe=""))


def error_message(err: errors.CloudmigError) -> str:
    """What the caller may read: an internal error never leaks anything but the generic text."""
    if isinstance(err, errors.InternalError) or err.code == errors.InternalError.code:
        return errors.InternalError.default_message
    return err.message


def render_error(
    err: errors.CloudmigError, *, request_id: str, host_id: str, fmt: str
) -> tuple[bytes, str, int]:
    """The RDS error envelope as ``(bytes, content_type, http_status)``; XML is rooted at ``<Error>``."""
    body = {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": err.code,
        "Message": error_message(err),
        "Recommend": recommend_url(err.code, request_id),
    }
    if _is_xml(fmt):
        return _xml_bytes("Error", body), XML_CONTENT_TYPE, err.status
    return _json_bytes(body), JSON_CONTENT_TYPE, err.status
