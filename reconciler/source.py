"""Where manifests come from: a local directory, or a Git URL (or a bare repository's path) at a branch, tag or commit.

Git sources use the same cached shallow workspace as the bot (HTTPS token through the
environment, SSH deploy key with strict host keys). Credentials come from
``RECONCILER_GIT_USERNAME``/``RECONCILER_GIT_TOKEN`` or ``RECONCILER_GIT_SSH_KEY``/
``RECONCILER_GIT_KNOWN_HOSTS``. The path inside the source never leaves it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gitopskit.errors import GitError
from gitopskit.workspace import GitAuth, Workspace
from reconciler.errors import SourceError, UsageError

_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True, slots=True)
class Fetched:
    root: Path  # the directory to render
    revision: str  # commit SHA, or "local" for a directory


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def is_bare_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _auth() -> GitAuth:
    env = os.environ
    key, known = env.get("RECONCILER_GIT_SSH_KEY"), env.get("RECONCILER_GIT_KNOWN_HOSTS")
    return GitAuth(
        env.get("RECONCILER_GIT_USERNAME"),
        env.get("RECONCILER_GIT_TOKEN"),
        Path(key) if key else None,
        Path(known) if known else None,
    )


class Source:
    def __init__(
        self, source: str, revision: str = "main", path: str = "", cache: Path | None = None, auth: GitAuth | None = None
    ) -> None:
        if not is_url(source) and is_bare_repo(Path(source)):
            source = Path(source).resolve().as_uri()  # a bare repository is a Git source, not a directory to render
        self.source = source
        self.revision = revision or "main"
        self.path = path
        self._ws: Workspace | None = None
        if is_url(source):
            base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "reconciler"
            clone_branch = "main" if re.fullmatch(r"[0-9a-f]{7,40}", self.revision) else self.revision
            self._ws = Workspace(source, clone_branch, cache or base, auth or _auth())

    def _inside(self, base: Path) -> Path:
        root = (base / self.path).resolve()
        if root != base.resolve() and base.resolve() not in root.parents:
            raise UsageError(f"--path {self.path!r} leaves the source")
        if not root.is_dir():
            raise SourceError(f"--path {self.path!r}: no such directory in the source")
        return root

    def fetch(self) -> Fetched:
        if self._ws is None:
            base = Path(self.source)
            if not base.is_dir():
                raise SourceError(f"{self.source}: no such directory (or give a Git URL)")
            return Fetched(self._inside(base), "local")
        try:
            sha = self._checkout()
        except GitError as exc:
            raise SourceError(str(exc)) from exc
        return Fetched(self._inside(self._ws.dir), sha)

    def _checkout(self) -> str:
        ws = self._ws
        assert ws is not None
        rev = self.revision
        if ws.remote_sha(rev) is not None:
            return ws.sync(rev)
        # a tag or a commit: fetch it alone, shallow, and check it out detached
        ref = f"refs/tags/{rev}" if not re.fullmatch(r"[0-9a-f]{7,40}", rev) else rev
        ws._git("fetch", "--depth", "1", "--no-tags", "origin", ref)
        ws._git("checkout", "-q", "--force", "--detach", "FETCH_HEAD")
        ws._git("clean", "-q", "-fdx")
        return ws.head()
