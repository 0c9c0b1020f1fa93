"""A failed git command's kind, read from git's own messages (a GitRepository's condition reason comes from it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopskit.errors import GitFailure
from gitopskit.workspace import GitCommandError, Workspace

CASES = [
    ("fatal: unable to update url base from redirection: asked for: http://a/r.git/info/refs", GitFailure.REDIRECT),
    ("error: RPC failed; curl 28 Operation too slow. Less than 1000 bytes/sec transferred", GitFailure.TIMEOUT),
    ("Host key verification failed.\nfatal: Could not read from remote repository.", GitFailure.AUTH),
    ("git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.", GitFailure.AUTH),
    ("fatal: Authentication failed for 'http://127.0.0.1:9/r.git/'", GitFailure.AUTH),
    ("fatal: unable to access 'http://127.0.0.1:1/r.git/': Failed to connect to 127.0.0.1 port 1", GitFailure.UNREACHABLE),
    ("fatal: unable to access 'https://nohost.invalid/r.git/': Could not resolve host: nohost.invalid", GitFailure.UNREACHABLE),
    ("warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin",
     GitFailure.NOT_FOUND),
    ("fatal: couldn't find remote ref refs/heads/nope", GitFailure.NOT_FOUND),
    ("fatal: repository 'http://127.0.0.1:9/gone.git/' not found", GitFailure.NOT_FOUND),
    ("fatal: bad object HEAD", GitFailure.OTHER),
]  # fmt: skip


@pytest.mark.parametrize(("stderr", "kind"), CASES, ids=[str(k) + f"-{i}" for i, (_, k) in enumerate(CASES)])
def test_a_git_error_carries_the_kind_of_failure(stderr: str, kind: GitFailure, tmp_path: Path) -> None:
    ws = Workspace("http://127.0.0.1:9/r.git", "main", tmp_path)
    err = ws._error(["fetch"], GitCommandError(["git", "fetch"], 128, stderr, ""))
    assert err.kind is kind
    assert str(err).startswith("git fetch http://127.0.0.1:9/r.git failed: ")
