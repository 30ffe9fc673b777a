"""Action registry: RDS Action name -> handler. Handlers validate, call a service, shape the body.

Importing the package registers every action, so REGISTRY is complete wherever it is read.
"""

from cloudmig.api.actions import instances as _instances  # noqa: F401  (registers handlers)
from cloudmig.api.actions import migration as _migration  # noqa: F401
from cloudmig.api.actions import switchover as _switchover  # noqa: F401
from cloudmig.api.actions.registry import REGISTRY, action

__all__ = ["REGISTRY", "action"]
