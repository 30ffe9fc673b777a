"""Where the service is and which key signs: environment variables (`CLOUDMIG_ENDPOINT`,
`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`) or, for what they leave unset, a
YAML client config file (`CLOUDMIG_CLIENT_CONFIG`, default `~/.config/cloudmig/client.yaml`) that
`cloudmig keys create --write-config` writes with mode 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from cloudmig.cli.output import CliError

DEFAULT_ENDPOINT = "http://127.0.0.1:9800"
ENV_ENDPOINT = "CLOUDMIG_ENDPOINT"
ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105  (a variable name)
ENV_CLIENT_CONFIG = "CLOUDMIG_CLIENT_CONFIG"
CLIENT_CONFIG_KEYS = ("endpoint", "access_key_id", "access_key_secret")


def default_client_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cloudmig" / "client.yaml"


# Set by `cloudmig --client-config FILE` for the commands of this run.
override_path: Path | None = None


def client_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    if override_path is not None:
        return override_path
    env = os.environ.get(ENV_CLIENT_CONFIG)
    return Path(env) if env else default_client_config_path()


@dataclass(frozen=True)
class Endpoint:
    protocol: str
    host_port: str

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host_port}"


def parse_endpoint(text: str) -> Endpoint:
    """`http://127.0.0.1:9800`, `https://host`, or a bare `host:port` (http)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"invalid endpoint {text!r}: use http://HOST:PORT or https://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise CliError(f"invalid endpoint {text!r}: no path, query or user part")
    try:
        _ = parts.port
    except ValueError:
        raise CliError(f"invalid endpoint {text!r}: bad port") from None
    return Endpoint(parts.scheme, parts.netloc)


@dataclass(frozen=True)
class ClientConfig:
    endpoint: Endpoint
    access_key_id: str
    access_key_secret: str = field(repr=False)
    # Where each value came from: "env CLOUDMIG_ENDPOINT", "file /path", "default".
    origins: dict[str, str] = field(default_factory=dict)


def read_client_file(path: Path) -> dict[str, str]:
    """The YAML mapping of a client config file; {} when there is none. CliError when malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read client config {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"client config {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise CliError(f"client config {path}: expected a mapping of {', '.join(CLIENT_CONFIG_KEYS)}")
    unknown = sorted(set(map(str, loaded)) - set(CLIENT_CONFIG_KEYS))
    if unknown:
        raise CliError(f"client config {path}: unknown key(s) {', '.join(unknown)}")
    return {str(k): str(v) for k, v in loaded.items() if v is not None}


def load_client_config(path: Path | None = None, *, require_key: bool = True) -> ClientConfig:
    cfg_path = client_config_path(path)
    from_file = read_client_file(cfg_path)
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for key, env in (
        ("endpoint", ENV_ENDPOINT),
        ("access_key_id", ENV_KEY_ID),
        ("access_key_secret", ENV_KEY_SECRET),
    ):
        if os.environ.get(env):
            values[key], origins[key] = os.environ[env], f"env {env}"
        elif from_file.get(key):
            values[key], origins[key] = from_file[key], f"file {cfg_path}"
    if "endpoint" not in values:
        values["endpoint"], origins["endpoint"] = DEFAULT_ENDPOINT, "default"
    if require_key and not (values.get("access_key_id") and values.get("access_key_secret")):
        raise CliError(
            "no access key: run `cloudmig keys create --write-config` on the service host, or set "
            f"{ENV_KEY_ID} and {ENV_KEY_SECRET}"
        )
    return ClientConfig(
        endpoint=parse_endpoint(values["endpoint"]),
        access_key_id=values.get("access_key_id", ""),
        access_key_secret=values.get("access_key_secret", ""),
        origins=origins,
    )


def write_client_config(path: Path, endpoint: str, key_id: str, secret: str) -> None:
    """Write the client config with mode 0600 (created so, never widened), replacing an older one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = yaml.safe_dump(
        {"endpoint": endpoint, "access_key_id": key_id, "access_key_secret": secret}, sort_keys=False
    )
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
