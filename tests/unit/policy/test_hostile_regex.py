"""Regexes from objects anyone may write (Flux's filterTags / exclusionList, kustomize's patch targets) are Go's:
linear-time matching, Go's syntax — a pattern that backtracks catastrophically in Python's ``re`` cannot stall
the process, and what Go refuses is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from imagebot.errors import PolicyError
from imagebot.policy import PolicyKind, PolicySpec, build
from reconciler.patches import PatchError, parse_patches

# `^(a+)+$` against 'aaaa…ab': Python's re tries 2^n ways (n=40: days), holding the GIL the whole time.
HOSTILE = r"^(a+)+$"
TAG = "a" * 120 + "b"  # a valid tag (at most 128 characters)


def run_bounded(code: str) -> str:
    """Runs ``code`` in a child process: a catastrophic match would hang it — and, holding the GIL, any
    in-process watchdog with it — so the bound is the child's (generous) timeout."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the match never ended: catastrophic backtracking")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_backtracking_filter_tags_pattern_matches_a_long_tag_in_linear_time() -> None:
    out = run_bounded(f"""
        from imagebot.policy import PolicyKind, PolicySpec, build
        from imagebot.policy.filter import Exclusions
        policy = build(PolicySpec(PolicyKind.ALPHABETICAL, "asc", pattern={HOSTILE!r}))
        print(policy.select([{TAG!r}, "aaa"]), Exclusions(({HOSTILE!r},)).excludes({TAG!r}))
    """)
    assert out == "aaa None"


def test_a_backtracking_patch_target_matches_a_long_name_in_linear_time() -> None:
    out = run_bounded(f"""
        from reconciler.model import Manifest, ResourceKey
        from reconciler.patches import parse_patches
        (patch,) = parse_patches([{{"patch": "- {{op: add, path: /x, value: 1}}", "target": {{"name": {HOSTILE!r}}}}}])
        name = {TAG!r}
        m = Manifest(ResourceKey("", "ConfigMap", "default", name), "v1", {{"metadata": {{"name": name}}}})
        print(patch.target.matches(m))
    """)
    assert out == "False"


@pytest.mark.parametrize(
    "pattern",
    [r"^(a)\1$", r"^v(?=1)", r"^(?!rc)", r"(?<=v)1", r"a{1001}", r"(?x) a"],
    ids=["backreference", "lookahead", "negative_lookahead", "lookbehind", "repeat_over_1000", "verbose_flag"],
)
def test_what_gos_regexp_refuses_is_refused_with_the_field_named(pattern: str) -> None:
    with pytest.raises(PolicyError, match="invalid --pattern regex"):
        build(PolicySpec(PolicyKind.ALPHABETICAL, "asc", pattern=pattern))
    with pytest.raises(PatchError, match=r"spec\.patches\[0\]\.target\.name"):
        parse_patches([{"patch": "- {op: add, path: /x, value: 1}", "target": {"name": pattern}}])


def test_go_named_groups_and_ascii_classes_still_work() -> None:
    spec = PolicySpec(PolicyKind.NUMERICAL, "asc", pattern=r"^build-(?<ts>\d+)-(?P<sha>\w+)$", extract="$ts")
    assert build(spec).select(["build-9-abc", "build-10-def", "build-\uff19\uff19-x", "build-11-\u00e9"]) == "build-10-def"
