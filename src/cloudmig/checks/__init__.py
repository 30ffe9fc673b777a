"""The assessment (precheck): gather facts from source, target and host, then one rule per sub-check."""

from cloudmig.checks.catalogue import CATALOGUE, Assessment, assess, evaluate, run_assessment
from cloudmig.checks.facts import SourceFacts, TargetFacts, TargetSpec
from cloudmig.checks.source_facts import gather_source
from cloudmig.checks.target_facts import gather_target, gather_target_contents

__all__ = [
    "CATALOGUE",
    "Assessment",
    "SourceFacts",
    "TargetFacts",
    "TargetSpec",
    "assess",
    "evaluate",
    "gather_source",
    "gather_target",
    "gather_target_contents",
    "run_assessment",
]
