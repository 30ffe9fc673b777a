"""A real `cloudmig serve` process for e2e tests (cloudmig.harness.service), and the official SDK
clients pointed at it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cloudmig.harness.service import ServiceProcess, free_port, instance_port_range

__all__ = ["Service", "free_port", "instance_port_range"]


@dataclass
class Service(ServiceProcess):
    def start(self, timeout: float = 60) -> Service:
        super().start(timeout)
        return self

    # ---- clients -------------------------------------------------------------------------------

    def tea(self, *, v1: bool = False, secret: str | None = None, key_id: str | None = None) -> Any:
        from alibabacloud_rds20140815.client import Client
        from alibabacloud_tea_openapi.models import Config

        cfg = Config(
            access_key_id=key_id or self.key_id,
            access_key_secret=secret or self.key_secret,
            endpoint=self.endpoint,
            protocol="http",
            region_id="cn-hangzhou",
            read_timeout=60000,
            connect_timeout=10000,
        )
        if v1:
            cfg.signature_algorithm = "v2"
        return Client(cfg)

    def core(self, *, secret: str | None = None, key_id: str | None = None) -> Any:
        from aliyunsdkcore.client import AcsClient

        return AcsClient(key_id or self.key_id, secret or self.key_secret, "cn-hangzhou", timeout=60)

    def core_call(self, request: Any, *, client: Any = None, **kw: Any) -> dict[str, Any]:
        """`request` sent through `client` (an AcsClient of this service) or a new core() client."""
        request.set_endpoint(self.endpoint)
        acs = client if client is not None else self.core(**kw)
        return dict(json.loads(acs.do_action_with_exception(request)))
