"""docs/api-coverage.md is generated from the SDK's operation list and the action registry."""

from __future__ import annotations

from pathlib import Path

from cloudmig.api import coverage
from cloudmig.api.actions import REGISTRY

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "api-coverage.md"

SAMPLE_CLIENT = """
class Client:
    def create_thing_with_options(self, request, runtime):
        params = open_api_util_models.Params(
            action = 'CreateThing', version = '2014-08-15', method = 'POST', style = 'RPC',
        )
    async def create_thing_with_options_async(self, request, runtime):
        params = open_api_util_models.Params(action = 'CreateThing', version = '2014-08-15')
    def describe_things_with_options(self, request, runtime):
        params = open_api_util_models.Params(action = 'DescribeThings', version = '2014-08-15')
    def old_with_options(self, request, runtime):
        params = open_api_util_models.Params(action = 'Old', version = '2013-05-28')
    def describe_things(self, request):
        return self.describe_things_with_options(request, None)
"""


def test_operations_are_read_from_the_sdk_source() -> None:
    ops = coverage.operations_from_source(SAMPLE_CLIENT)
    assert [(o.action, o.method) for o in ops] == [
        ("CreateThing", "create_thing"),
        ("DescribeThings", "describe_things"),
    ]


def test_render_splits_implemented_and_missing() -> None:
    ops = coverage.operations_from_source(SAMPLE_CLIENT)
    text = coverage.render(ops, {"DescribeThings", "Extra"}, {"DescribeThings"}, "`sdk` 1.0")
    assert "**1 of the 2 actions**" in text
    assert "| DescribeThings | `describe_things` | `DescribeThingsRequest` |" in text
    assert "## Not implemented (1)" in text and "| CreateThing | `create_thing` |" in text
    assert "## Implemented, not in the SDK" in text and "- Extra" in text


def test_every_registered_action_is_an_sdk_operation() -> None:
    ops = {o.action: o for o in coverage.sdk_operations()}
    assert len(ops) > 300
    assert coverage.implemented_actions() <= set(ops)
    for name in REGISTRY:
        assert ops[name].style == "RPC" and ops[name].http_method == "POST"
        assert name in coverage.core_request_classes()


def test_docs_api_coverage_is_up_to_date() -> None:
    # Regenerate with `python -m cloudmig.api.coverage` (make api-coverage) after adding an action.
    assert DOC.read_text(encoding="utf-8") == coverage.generate()


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "api-coverage.md"
    assert coverage.main(["--check", "--output", str(out)]) == 1
    assert coverage.main(["--output", str(out)]) == 0
    assert coverage.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text() + "edited\n")
    assert coverage.main(["--check", "--output", str(out)]) == 1
