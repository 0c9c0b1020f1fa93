"""`imagebot select`: the exact CLI contract scripts rely on (stdout, stderr, exit codes)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagebot.cli import main


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "stdin", "code", "stdout"),
    [
        (["select", "--semver", "^1", "1.0.0", "1.4.0", "2.0.0"], "", 0, "1.4.0\n"),
        (["select", "--semver", "^1"], "1.0.0\r\n\n  1.2.0  \n2.0.0\n", 0, "1.2.0\n"),
        (["select", "--numerical", "DESC", "--", "-1", "-3", "2"], "", 0, "-3\n"),
        (["select", "--alphabetical", "asc", "--pattern", "^main-", "main-a", "dev-z"], "", 0, "main-a\n"),
        (["select", "--semver", "^3", "1.0.0"], "", 1, ""),
        (["select", "--semver", "^3"], "", 1, ""),
        (["select", "--semver", ">=1 <<2"], "", 2, ""),
        (["select", "--numerical", "up"], "", 2, ""),
        (["select", "--alphabetical", "asc", "--extract", "$1"], "", 2, ""),
        (["select", "--alphabetical", "asc", "--pattern", "("], "", 2, ""),
        (["select", "--semver", "^1", "--numerical", "asc"], "", 2, ""),
        (["select"], "", 2, ""),
    ],
    ids=[
        "args",
        "stdin_stripped",
        "double_dash_negative",
        "pattern",
        "none_qualify_exit_1",
        "no_tags_exit_1",
        "bad_range_exit_2",
        "bad_order_exit_2",
        "extract_without_pattern_exit_2",
        "bad_regex_exit_2",
        "two_policies_exit_2",
        "no_policy_exit_2",
    ],
)
def test_select_cli_contract(argv: list[str], stdin: str, code: int, stdout: str) -> None:
    got_code, got_out, got_err = run(argv, stdin)
    assert (got_code, got_out) == (code, stdout)
    if code:
        assert got_err.strip(), "a failure must say why on stderr"


def test_invalid_policy_exits_2_without_reading_stdin() -> None:
    class Exploding(io.StringIO):
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("stdin must not be read for an invalid policy")

    err = io.StringIO()
    assert main(["select", "--semver", "nope"], out=io.StringIO(), err=err, stdin=Exploding()) == 2
    assert "invalid semver range 'nope'" in err.getvalue()


def test_explain_lists_every_tag_and_the_winner() -> None:
    code, out, err = run(["select", "--semver", "^1", "--explain", "1.0.0", "2.0.0", "x.sig", "1.1"])
    assert code == 0 and out == "1.0.0\n"
    assert "2.0.0" in err and "outside ^1" in err
    assert "excluded" in err and "not strict semver" in err and "=> '1.0.0' ranks highest" in err


def test_json_has_selection_and_verdicts() -> None:
    code, out, _ = run(["select", "--numerical", "asc", "--json", "3", "x", "10"])
    doc = json.loads(out)
    assert code == 0 and doc["selected"] == "10"
    assert [t["outcome"] for t in doc["tags"]] == ["kept", "invalid", "selected"]


def test_help_documents_ties_and_exit_codes() -> None:
    proc = subprocess.run([sys.executable, "-m", "imagebot", "select", "--help"], capture_output=True, text=True, check=True)
    assert "ties:" in proc.stdout and "exit codes:" in proc.stdout and "code point" in proc.stdout


def test_cosign_key_needs_image_the_signatures_live_in_the_registry(tmp_path: Path) -> None:
    key = tmp_path / "cosign.pub"
    key.write_text("unused\n")
    code, out, err = run(["select", "--semver", "*", "--cosign-key", str(key), "1.0.0"])
    assert code == 2 and out == "" and "--cosign-key needs --image" in err
