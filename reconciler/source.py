"""Where manifests come from: a local directory, or a Git URL (or a bare repository's path) at a branch, tag or commit
— or, for the controller's GitRepositories, the newest tag inside a semver range, or a full ref name.

Git sources use the same cached shallow workspace as the bot (HTTPS token through the
environment, SSH deploy key with strict host keys). Credentials come from
``RECONCILER_GIT_USERNAME``/``RECONCILER_GIT_TOKEN`` or ``RECONCILER_GIT_SSH_KEY``/
``RECONCILER_GIT_KNOWN_HOSTS``. The path inside the source never leaves it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gitopskit import semver
from gitopskit.errors import GitError
from gitopskit.workspace import GitAuth, GitCommandError, Workspace
from reconciler.errors import SourceError, UsageError

_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True, slots=True)
class Fetched:
    root: Path  # the directory to render
    revision: str  # commit SHA, or "local" for a directory
    ref: str = ""  # the ref it resolved to, when that is news: the tag a semver range chose


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


_SHA = re.compile(r"[0-9a-f]{7,40}")
REF_KINDS = ("", "branch", "tag", "commit", "semver", "name")  # "": guessed from the revision (the CLI's --revision)


class Source:
    """``kind`` says what ``revision`` is: a branch, tag, commit, a semver range (the newest tag inside it, as Flux's
    ``ref.semver``) or a full ref name (``refs/heads/…``, ``refs/tags/…``: Flux's ``ref.name``); "" guesses."""

    def __init__(
        self,
        source: str,
        revision: str = "main",
        path: str = "",
        cache: Path | None = None,
        auth: GitAuth | None = None,
        kind: str = "",
    ) -> None:
        if kind not in REF_KINDS:
            raise UsageError(f"unknown ref kind {kind!r}")
        if not is_url(source) and is_bare_repo(Path(source)):
            source = Path(source).resolve().as_uri()  # a bare repository is a Git source, not a directory to render
        self.source = source
        self.revision = revision or "main"
        self.kind = kind
        self.path = path
        self._ws: Workspace | None = None
        self._cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagebot" / "reconciler"
        self._auth = auth or _auth()
        if kind == "name":
            head, _, rest = self.revision.partition("refs/heads/")
            tag = self.revision.removeprefix("refs/tags/")
            if not head and rest:
                self.kind, self.revision = "branch", rest
            elif tag != self.revision and tag:
                self.kind, self.revision = "tag", tag
            else:
                raise UsageError(f"ref name {self.revision!r}: only refs/heads/… and refs/tags/… names are supported")
        if is_url(source) and self.kind != "semver":  # a semver source's clone waits until a tag is chosen
            clone_branch = "main" if self.kind == "commit" or (not kind and _SHA.fullmatch(self.revision)) else self.revision
            self._ws = Workspace(source, clone_branch, self._cache, self._auth)

    def _inside(self, base: Path) -> Path:
        root = (base / self.path).resolve()
        if root != base.resolve() and base.resolve() not in root.parents:
            raise UsageError(f"--path {self.path!r} leaves the source")
        if not root.is_dir():
            raise SourceError(f"--path {self.path!r}: no such directory in the source")
        return root

    def fetch(self, export: Callable[[Fetched], Path] | None = None) -> Fetched:
        """Fetch and check out the revision. ``export`` (a Git source only) copies the checked-out tree while the
        workspace is still locked — no other fetch of the same clone can move it meanwhile — and its path becomes
        the root."""
        if self._ws is None and self.kind != "semver":
            base = Path(self.source)
            if not base.is_dir():
                raise SourceError(f"{self.source}: no such directory (or give a Git URL)")
            return Fetched(self._inside(base), "local")
        try:
            tag = ""
            if self.kind == "semver":
                tag = self._newest_tag()
                self._ws = self._ws or Workspace(self.source, tag, self._cache, self._auth)
            assert self._ws is not None
            with self._ws.exclusive():
                sha = self._detached(f"refs/tags/{tag}") if tag else self._checkout()
                fetched = Fetched(self._inside(self._ws.dir), sha, tag)
                return replace(fetched, root=export(fetched)) if export is not None else fetched
        except GitError as exc:
            raise SourceError(str(exc)) from exc

    def _checkout(self) -> str:
        ws = self._ws
        assert ws is not None
        rev = self.revision
        if self.kind == "branch" or (not self.kind and ws.remote_sha(rev) is not None):
            return ws.sync(rev)
        # a tag or a commit: fetch it alone, shallow, and check it out detached
        return self._detached(rev if self.kind == "commit" or (not self.kind and _SHA.fullmatch(rev)) else f"refs/tags/{rev}")

    def _detached(self, ref: str) -> str:
        ws = self._ws
        assert ws is not None
        with ws.exclusive():
            ws._git("fetch", "--depth", "1", "--no-tags", "origin", ref)
            ws._git("checkout", "-q", "--force", "--detach", "FETCH_HEAD")
            ws._git("clean", "-q", "-fdx")
            return ws.head()

    def _newest_tag(self) -> str:
        """The newest tag inside the semver range (Flux's ``ref.semver``), asked of the remote (no clone needed)."""
        probe = self._ws or Workspace(self.source, "", self._cache, self._auth)
        self._cache.mkdir(parents=True, exist_ok=True)
        try:
            out = probe._run(["ls-remote", "--tags", "--refs", "--", self.source], self._cache)
        except GitCommandError as exc:
            raise probe._error(["ls-remote"], exc) from exc
        tags = [line.partition("\trefs/tags/")[2] for line in out.splitlines() if "\trefs/tags/" in line]
        try:
            tag = semver.pick(self.revision, tags)
        except semver.RangeError as exc:
            raise UsageError(f"ref.semver: {exc}") from None
        if tag is None:
            raise SourceError(f"no tag of {self.source} matches semver range {self.revision!r} ({len(tags)} tag(s) found)")
        return tag
