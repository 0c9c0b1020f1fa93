"""JSON nested deeper than Python's parser recurses (``[[[[…``) makes json.loads raise RecursionError, not
ValueError: every reader of JSON someone else wrote treats it as the bad JSON it is (the registry client's
parse_json, the webhook receiver and the Secret formats already did)."""

from __future__ import annotations

import pytest

from imagebot.config.fluxextras import FIRST_SEEN, LATEST_SINCE
from imagebot.controller.promotion import read_first_seen, read_history
from imagebot.update.setters import marker_in_comment

DEEP = "[" * 200_000 + "]" * 200_000


def test_a_marker_comment_nested_too_deeply_is_no_marker() -> None:
    assert marker_in_comment("# " + DEEP[:100_000] + '"$imagepolicy"' + DEEP[100_000:]) is None


@pytest.mark.parametrize(("key", "read"), [(LATEST_SINCE, read_history), (FIRST_SEEN, read_first_seen)])
def test_promotion_annotations_nested_too_deeply_are_refused_by_name(key: str, read: object) -> None:
    from imagebot.config.fluxextras import ExtrasError

    with pytest.raises(ExtrasError, match="not JSON"):
        read({key: DEEP})  # type: ignore[operator]
