"""The plan of an operator's hold / release / approve on an ImagePolicy (pure): what is written, what is already
so (no write), what is refused and why — never an annotation set the controller would call InvalidPolicy."""

from __future__ import annotations

from typing import Any

import pytest

from imagebot.config import fluxextras as fx
from imagebot.controller.overrides import Action, NotFound, Plan, PolicyRef, Refused, parse_ref, plan
from imagebot.errors import UsageError

REF = PolicyRef("apps", "prod")


def obj(annotations: dict[str, str] | None = None, tag: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "prod", "annotations": annotations or {}},
            "status": {"latestRef": {"name": "r/app", "tag": tag}} if tag else {}}  # fmt: skip


def test_hold_writes_the_reason_and_a_pin_and_a_second_hold_is_no_write_keeping_the_reason() -> None:
    assert plan(Action.HOLD, REF, obj(), reason=" incident 42 ") == Plan(
        {fx.HOLD: "incident 42"}, "apps/prod: on hold (incident 42); its latestRef stays"
    )
    held = obj({fx.HOLD: "incident 42", fx.HOLD_TAG: "1.4.0"})
    assert plan(Action.HOLD, REF, held) == Plan(None, "apps/prod: already held (incident 42; pinned at 1.4.0)")
    assert plan(Action.HOLD, REF, held, reason="incident 43").annotations == {fx.HOLD: "incident 43"}
    assert plan(Action.HOLD, REF, held, tag="1.3.0").annotations == {fx.HOLD: "incident 42", fx.HOLD_TAG: "1.3.0"}


def test_release_removes_hold_and_pin_and_is_no_write_when_not_held() -> None:
    assert plan(Action.RELEASE, REF, obj({fx.HOLD: "", fx.HOLD_TAG: "1.0.0"})).annotations == {fx.HOLD: None, fx.HOLD_TAG: None}
    assert plan(Action.RELEASE, REF, obj({fx.SOAK: "1h", fx.PROMOTE_FROM: "staging"})) == Plan(None, "apps/prod: was not on hold")


def test_approve_takes_the_sources_latest_ref_or_the_tag_given_and_says_why_when_there_is_nothing() -> None:
    promoted = obj({fx.PROMOTE_FROM: "staging", fx.SOAK: "24h"}, tag="1.3.0")
    assert plan(Action.APPROVE, REF, promoted, source=obj(tag="1.4.0")).annotations == {fx.APPROVE: "1.4.0"}
    assert plan(Action.APPROVE, REF, promoted, tag="1.3.9").annotations == {fx.APPROVE: "1.3.9"}
    assert plan(Action.APPROVE, REF, promoted, source=obj(tag="1.3.0")) == Plan(None, "apps/prod: already at 1.3.0")
    approved = obj({fx.PROMOTE_FROM: "staging", fx.APPROVE: "1.4.0"}, tag="1.3.0")
    assert plan(Action.APPROVE, REF, approved, source=obj(tag="1.4.0")) == Plan(None, "apps/prod: 1.4.0 already approved")
    held = obj({fx.PROMOTE_FROM: "staging", fx.HOLD: "freeze"}, tag="1.3.0")
    assert plan(Action.APPROVE, REF, held, tag="1.4.0") == Plan(
        {fx.APPROVE: "1.4.0"},
        "apps/prod: 1.4.0 approved; the controller promotes it from staging now — once the policy's hold is released",
    )
    pinned = obj({}, tag="1.3.0")
    said = plan(Action.HOLD, REF, pinned, tag="1.3.0").message
    assert said == "apps/prod: on hold (no reason given; pinned at 1.3.0); its latestRef stays"
    with pytest.raises(Refused, match="does not promote from another ImagePolicy"):
        plan(Action.APPROVE, REF, obj(tag="1.3.0"), tag="1.4.0")
    with pytest.raises(Refused, match="staging has no latestRef yet"):
        plan(Action.APPROVE, REF, promoted, source=obj())
    with pytest.raises(Refused, match="apps/staging, which does not exist"):
        plan(Action.APPROVE, REF, promoted, source=None)
    with pytest.raises(Refused, match="is not an image tag"):
        plan(Action.APPROVE, REF, promoted, tag="-bad")


def test_a_write_the_controller_would_refuse_is_refused_but_an_error_the_policy_had_does_not_block_a_hold() -> None:
    typo = obj({"imagebot.dev/hodl": "x"})
    assert plan(Action.HOLD, REF, typo).annotations == {fx.HOLD: ""}, "the typo was there: the hold still goes on"
    with pytest.raises(Refused, match="reason: at most 200"):
        plan(Action.HOLD, REF, obj(), reason="x" * 201)
    with pytest.raises(Refused, match="no control characters"):
        plan(Action.HOLD, REF, obj(), reason="a\x1bb")


@pytest.mark.parametrize("text", ["apps/prod", "apps:prod", " apps/prod "])
def test_a_policy_reference_is_namespace_and_name(text: str) -> None:
    assert parse_ref(text) == REF and str(REF) == "apps/prod"
    assert REF.path == "/apis/image.toolkit.fluxcd.io/v1/namespaces/apps/imagepolicies/prod"


@pytest.mark.parametrize(
    "text", ["prod", "Apps/prod", "apps/", "/prod", "apps/prod/x", "a..b/prod", "apps/pr od", "x" * 64 + "/p"]
)
def test_a_bad_policy_reference_is_a_usage_error_before_any_request(text: str) -> None:
    with pytest.raises(UsageError, match="--policy"):
        parse_ref(text)


def test_not_found_and_refused_are_usage_errors_exit_2() -> None:
    assert NotFound("x").exit_code == Refused("x").exit_code == 2
