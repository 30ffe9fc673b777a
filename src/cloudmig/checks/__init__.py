"""The assessment (precheck): gather facts from source and target, then one rule per sub-check."""

from cloudmig.checks.catalogue import CATALOGUE, evaluate, run_assessment
from cloudmig.checks.facts import (
    SourceFacts,
    TargetFacts,
    TargetSpec,
    gather_source,
    gather_target,
)

__all__ = [
    "CATALOGUE",
    "SourceFacts",
    "TargetFacts",
    "TargetSpec",
    "evaluate",
    "gather_source",
    "gather_target",
    "run_assessment",
]
