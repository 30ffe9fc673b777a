"""Request side of the RDS OpenAPI: parameters, signature verification, replay protection.

Pure: the HTTP app builds an `IncomingRequest`, passes a key lookup and a nonce recorder, and gets an
`Authenticated` (or a `cloudmig.errors.CloudmigError` to render).

Scheme detection (`authenticate`):

* ``Authorization: ACS3-...`` header → V3 (ACS3-HMAC-SHA256; other ACS3 algorithms → IncompleteSignature);
* else a ``Signature`` parameter → V1 (HMAC-SHA1);
* else an ``Authorization`` header of another scheme → IncompleteSignature;
* else the request is unsigned and is checked as V1, so it gets ``MissingParameter`` naming the first
  absent common parameter (``AccessKeyId`` first), as the real RPC gateway answers.

Checks run in a fixed order — scheme, required parameters/headers, timestamp, access key, signature,
admission (the per-key rate limit), nonce, version — so a request refused before its signature is
verified, or throttled, never records its nonce. A request whose signature was verified records it
even when it is refused later (wrong Version, unknown Action, bad parameters): replaying a refused
request must not make it succeed once the state has changed. The recorder is told the action: while
the store's disk is full it keeps the nonces of reads in memory and refuses other requests, which
then leave no trace either (`cloudmig.api.nonces`).

A SignatureDoesNotMatch answer carries the server's string to sign (aliyunsdkcore compares it with its
own to report a wrong secret), with the values of secret parameters (`SECRET_PARAMS`) masked: a
password the caller sent is never echoed back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloudmig import errors
from cloudmig.api import signing
from cloudmig.api.incoming import IncomingRequest, normalize_format, parse_params

API_VERSION = "2014-08-15"
MAX_NONCE_LENGTH = 128  # store column width
MAX_ACCESS_KEY_ID_LENGTH = 64  # store column width
SECRET_MASK = "******"  # noqa: S105  (the mask, not a secret)
# Parameters whose values are secrets: masked wherever a request is echoed back.
SECRET_PARAMS = frozenset(
    {"SourcePassword", "AccountPassword", "Password", "NewPassword", "SecurityToken", "BearerToken"}
)

# Parameters that belong to the protocol, not to an action (removed from Authenticated.params).
# RegionId stays: some actions may want it, and every action ignores unknown parameters.
COMMON_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "SecurityToken",
        "BearerToken",
    }
)
V1_REQUIRED = (
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Action",
    "Version",
)
V3_REQUIRED_HEADERS = (
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)

_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)
_SHA256_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
# Printable ASCII without spaces: what an access key id or a nonce can be (no control character
# reaches the store, whose PostgreSQL flavour rejects NUL in text).
_PRINTABLE_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class KeyRecord:
    secret: str
    active: bool


@dataclass(frozen=True)
class Authenticated:
    action: str
    version: str
    params: dict[str, str]  # business parameters only (COMMON_PARAMS removed)
    format: str  # "JSON" or "XML"
    access_key_id: str
    nonce: str
    signature_version: str  # "V1" or "V3"


KeyLookup = Callable[[str], KeyRecord | None]
# (access_key_id, nonce, expires_at, action) -> True on first use, False when already seen; may raise
# a CloudmigError (the action lets it judge whether a nonce it cannot store durably may be kept in
# memory: cloudmig.api.nonces).
NonceRecorder = Callable[[str, str, datetime, str], bool]
# Called with the access key id once the signature is verified; raises to refuse (e.g. Throttling).
Admission = Callable[[str], None]


# ---- timestamps -----------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime | None:
    """``YYYY-MM-DDThh:mm:ss[.fraction]Z`` as an aware UTC datetime, or None."""
    m = _TIMESTAMP_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction = m.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC
        )
    except ValueError:
        return None


def _check_timestamp(text: str, name: str, now: datetime, window: timedelta) -> datetime:
    ts = parse_timestamp(text)
    if ts is None:
        if name == "Timestamp":
            raise errors.IllegalTimestamp()
        raise errors.IllegalTimestamp(
            f'The input parameter "{name}" is not a valid UTC time (YYYY-MM-DDThh:mm:ssZ).'
        )
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs(now - ts) > window:
        raise errors.TimestampExpired()
    return ts


def _check_nonce(nonce: str, name: str) -> None:
    if len(nonce) > MAX_NONCE_LENGTH:
        raise errors.InvalidParameter(name, f"It must not be longer than {MAX_NONCE_LENGTH} characters.")
    if not _PRINTABLE_TOKEN_RE.fullmatch(nonce):
        raise errors.InvalidParameter(name, "It must be printable ASCII without spaces.")


def _lookup_key(keys: KeyLookup, access_key_id: str) -> KeyRecord:
    if len(access_key_id) > MAX_ACCESS_KEY_ID_LENGTH or not _PRINTABLE_TOKEN_RE.fullmatch(access_key_id):
        raise errors.AccessKeyNotFound()  # no key can have that id: do not ask the store
    record = keys(access_key_id)
    if record is None:
        raise errors.AccessKeyNotFound()
    if not record.active:
        raise errors.AccessKeyInactive()
    return record


def _record_nonce(
    record_nonce: NonceRecorder, ak: str, nonce: str, expires_at: datetime, action: str
) -> None:
    if not record_nonce(ak, nonce, expires_at, action):
        raise errors.SignatureNonceUsed()


def _check_version(version: str) -> None:
    if version != API_VERSION:
        raise errors.InvalidVersion()


def masked(params: Mapping[str, str]) -> dict[str, str]:
    """``params`` with the values of `SECRET_PARAMS` replaced by a mask (empty values stay empty)."""
    return {k: (SECRET_MASK if k in SECRET_PARAMS and v else v) for k, v in params.items()}


def _business(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in COMMON_PARAMS}


def _incomplete(detail: str) -> errors.IncompleteSignature:
    return errors.IncompleteSignature(f"{errors.IncompleteSignature.default_message} {detail}")


# ---- authentication -------------------------------------------------------------------------------


def authenticate(
    req: IncomingRequest,
    *,
    keys: KeyLookup,
    record_nonce: NonceRecorder,
    now: datetime,
    window_seconds: int = 900,
    admit: Admission | None = None,
) -> Authenticated:
    """Verify a request's signature (V1 or V3) and return who called what; raise a CloudmigError.

    ``admit`` (the rate limit) runs once the signature is verified, before the nonce is recorded.
    """
    params = parse_params(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    authorization = headers.get("authorization", "")
    window = timedelta(seconds=window_seconds)
    if authorization.startswith("ACS3-"):
        return _authenticate_v3(req, params, headers, authorization, keys, record_nonce, now, window, admit)
    if "Signature" not in params and authorization.strip():
        raise _incomplete(
            "Only ACS3-HMAC-SHA256 Authorization headers and V1 (HMAC-SHA1) signatures are accepted."
        )
    return _authenticate_v1(req, params, keys, record_nonce, now, window, admit)


def _authenticate_v1(
    req: IncomingRequest,
    params: dict[str, str],
    keys: KeyLookup,
    record_nonce: NonceRecorder,
    now: datetime,
    window: timedelta,
    admit: Admission | None,
) -> Authenticated:
    for name in V1_REQUIRED:
        if not params.get(name):
            raise errors.MissingParameter(name)
    if params["SignatureMethod"] != signing.V1_SIGNATURE_METHOD:
        raise _incomplete(f"SignatureMethod must be {signing.V1_SIGNATURE_METHOD}.")
    if params["SignatureVersion"] != signing.V1_SIGNATURE_VERSION:
        raise _incomplete(f"SignatureVersion must be {signing.V1_SIGNATURE_VERSION}.")
    nonce, ak = params["SignatureNonce"], params["AccessKeyId"]
    _check_nonce(nonce, "SignatureNonce")

    ts = _check_timestamp(params["Timestamp"], "Timestamp", now, window)
    record = _lookup_key(keys, ak)

    string_to_sign = signing.v1_string_to_sign(req.method, params)
    expected = signing.v1_sign(record.secret, string_to_sign)
    if not signing.signatures_equal(params["Signature"], expected):
        raise errors.SignatureDoesNotMatch(signing.v1_string_to_sign(req.method, masked(params)))

    if admit is not None:
        admit(ak)
    _record_nonce(record_nonce, ak, nonce, ts + window, params["Action"])
    _check_version(params["Version"])
    return Authenticated(
        action=params["Action"],
        version=params["Version"],
        params=_business(params),
        format=normalize_format(params.get("Format")),
        access_key_id=ak,
        nonce=nonce,
        signature_version="V1",
    )


def _authenticate_v3(
    req: IncomingRequest,
    params: dict[str, str],
    headers: dict[str, str],
    authorization: str,
    keys: KeyLookup,
    record_nonce: NonceRecorder,
    now: datetime,
    window: timedelta,
    admit: Admission | None,
) -> Authenticated:
    auth = signing.v3_parse_authorization(authorization)
    if auth.algorithm != signing.V3_ALGORITHM:
        raise _incomplete(
            f"Signature algorithm {auth.algorithm} is not supported; use {signing.V3_ALGORITHM}."
        )
    for name in V3_REQUIRED_HEADERS:
        if not headers.get(name, "").strip():
            raise errors.MissingParameter(name)
    claimed_hash = headers["x-acs-content-sha256"].strip()
    if not _SHA256_HEX_RE.fullmatch(claimed_hash):
        raise _incomplete("x-acs-content-sha256 must be the hex SHA-256 of the request body.")
    signed = set(auth.signed_headers)
    if "authorization" in signed:
        raise _incomplete("The Authorization header cannot be signed.")
    must_sign = {"host"} | {h for h in headers if h.startswith("x-acs-")}
    if req.body and "content-type" in headers:
        must_sign.add("content-type")
    unsigned = sorted(must_sign - signed)
    if unsigned:
        raise _incomplete(f"SignedHeaders must include {';'.join(unsigned)}.")
    absent = sorted(signed - headers.keys())
    if absent:
        raise _incomplete(f"Signed header {';'.join(absent)} is not in the request.")
    sts_ak = headers.get("x-acs-accesskey-id")
    if sts_ak is not None and sts_ak.strip() != auth.access_key_id:
        raise _incomplete("x-acs-accesskey-id does not match the Authorization Credential.")
    nonce = headers["x-acs-signature-nonce"].strip()
    _check_nonce(nonce, "x-acs-signature-nonce")

    ts = _check_timestamp(headers["x-acs-date"].strip(), "x-acs-date", now, window)
    record = _lookup_key(keys, auth.access_key_id)

    # The canonical request ends with the hash of the body that actually arrived: a changed body fails
    # the signature; a header that lies about a body the signature covers fails just below.
    body_hash = signing.sha256_hex(req.body)
    body_matches = signing.signatures_equal(claimed_hash.lower(), body_hash)
    payload_hash = claimed_hash if body_matches else body_hash

    def string_to_sign(encode_keys: bool) -> str:
        canonical = signing.v3_canonical_request(
            req.method,
            req.path,
            req.query,
            headers,
            auth.signed_headers,
            payload_hash,
            encode_keys=encode_keys,
        )
        return signing.v3_string_to_sign(canonical, auth.algorithm)

    received = auth.signature.lower()
    sts = string_to_sign(False)
    ok = signing.signatures_equal(received, signing.v3_sign(record.secret, sts))
    if not ok and any(signing.percent_encode(k) != k for k, _ in req.query):
        # Clients that follow the published description encode keys too; accept either form.
        ok = signing.signatures_equal(received, signing.v3_sign(record.secret, string_to_sign(True)))
    if not ok or not body_matches:
        raise errors.SignatureDoesNotMatch(sts)

    if admit is not None:
        admit(auth.access_key_id)
    _record_nonce(record_nonce, auth.access_key_id, nonce, ts + window, headers["x-acs-action"].strip())
    version = headers["x-acs-version"].strip()
    _check_version(version)
    return Authenticated(
        action=headers["x-acs-action"].strip(),
        version=version,
        params=_business(params),
        format=normalize_format(params.get("Format")),
        access_key_id=auth.access_key_id,
        nonce=nonce,
        signature_version="V3",
    )
