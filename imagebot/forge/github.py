"""GitHub and GitHub Enterprise (``base_url``) through PyGithub.

PyGithub's exceptions never leave this module: they become ForgeError with the status and
GitHub's message (the token is never part of it). A 422 "pull request already exists" on open
is answered by updating that pull request instead — never a second one.
"""

from __future__ import annotations

import logging

from github import Auth, Github, GithubException
from github.PullRequest import PullRequest as GhPull
from github.Repository import Repository

from imagebot.errors import ForgeError
from imagebot.forge.base import PullRequest

log = logging.getLogger(__name__)


def _pr(p: GhPull) -> PullRequest:
    return PullRequest(p.number, p.html_url, p.title or "", p.body or "", p.head.ref, p.base.ref)


def _error(what: str, exc: GithubException) -> ForgeError:
    data = exc.data if isinstance(exc.data, dict) else {}
    message = data.get("message") or str(exc)
    details = "; ".join(str(e.get("message") or e.get("code")) for e in data.get("errors", []) if isinstance(e, dict))
    hint = ""
    if exc.status == 403 and "rate limit" in str(message).lower():
        hint = " — GitHub API rate limit reached; retry after the reset time"
    elif exc.status in (401, 403):
        hint = " — check the token and its permissions (pull requests: write)"
    return ForgeError(f"GitHub {what}: HTTP {exc.status}: {message}{(' (' + details + ')') if details else ''}{hint}")


class GitHubForge:
    def __init__(
        self, repo: str, token: str, base_url: str = "https://api.github.com", throttle: bool = True, timeout: int = 15
    ) -> None:
        kwargs = {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
        self._gh = Github(base_url=base_url, auth=Auth.Token(token), timeout=timeout, retry=None, **kwargs)  # type: ignore[arg-type]
        self.repo_name = repo
        self._repo: Repository | None = None
        self.calls = 0

    def _r(self) -> Repository:
        if self._repo is None:
            try:
                self.calls += 1
                self._repo = self._gh.get_repo(self.repo_name)
            except GithubException as exc:
                raise _error(f"repository {self.repo_name}", exc) from exc
        return self._repo

    def find_open(self, head: str, base: str) -> PullRequest | None:
        repo = self._r()
        owner = self.repo_name.split("/")[0]
        try:
            self.calls += 1
            for p in repo.get_pulls(state="open", head=f"{owner}:{head}", base=base):
                return _pr(p)
        except GithubException as exc:
            raise _error("list pull requests", exc) from exc
        return None

    def open(
        self, head: str, base: str, title: str, body: str, labels: tuple[str, ...], reviewers: tuple[str, ...]
    ) -> PullRequest:
        repo = self._r()
        try:
            self.calls += 1
            p = repo.create_pull(title=title, body=body, head=head, base=base)
        except GithubException as exc:
            if exc.status == 422 and "already exists" in str(exc.data):
                existing = self.find_open(head, base)
                if existing is not None:
                    return self.update(existing, title, body, labels)
            raise _error("open pull request", exc) from exc
        try:
            if labels:
                self.calls += 1
                p.add_to_labels(*labels)
            if reviewers:
                self.calls += 1
                p.create_review_request(reviewers=list(reviewers))
        except GithubException as exc:
            raise _error(f"label or request reviews on #{p.number}", exc) from exc
        return _pr(p)

    def update(self, pr: PullRequest, title: str, body: str, labels: tuple[str, ...]) -> PullRequest:
        if pr.title == title and pr.body == body and not labels:
            return pr
        repo = self._r()
        try:
            self.calls += 1
            p = repo.get_pull(pr.number)
            if p.title != title or (p.body or "") != body:
                self.calls += 1
                p.edit(title=title, body=body)
            missing = [lb for lb in labels if lb not in {x.name for x in p.labels}]
            if missing:
                self.calls += 1
                p.add_to_labels(*missing)
        except GithubException as exc:
            raise _error(f"update pull request #{pr.number}", exc) from exc
        return PullRequest(pr.number, pr.url, title, body, pr.head, pr.base)
