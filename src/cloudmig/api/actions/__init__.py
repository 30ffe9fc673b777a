"""Action registry: RDS Action name -> handler. Handlers validate, call a service, shape the body."""

from cloudmig.api.actions.registry import REGISTRY, action

__all__ = ["REGISTRY", "action"]
