"""Deliver an edit request to a config repo: push, push to another branch, or a pull request.

The edit is re-run on the remote tip on every attempt (never a text rebase), so a rejected push
(someone pushed first) is answered by fetch → edit again → commit → push, with bounded retries
and jittered backoff. Shared branches are never force-pushed; a pull request's head branch is
the bot's own (``imagebot/<environment>/<group>``) and is replaced with ``--force-with-lease``.
Nothing changed → no commit, no push, no API call. A request the edit cannot honour (bad input,
a failed verification) aborts before committing: no partial commit. After writing, the files are
read again and every requested subject confirmed: one the tree does not hold (behind an alias,
in a file that is not YAML or is templated, behind a link leaving the tree, a value the reference
grammar refuses) is returned in ``Result.skipped`` with its reason — a failure for the caller,
never "no change", and never to be recorded as current.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from gitopskit.workspace import PushOutcome, Workspace
from imagebot.errors import EditError, GitError, UsageError
from imagebot.forge.base import Forge, PullRequest
from imagebot.gitops.message import Rendered, Templates, change_records, render
from imagebot.refs import ImageRef
from imagebot.update import ChangeSet, EditRequest, ProblemKind, report, walk
from imagebot.update.confirm import Skipped, confirm, refuse_invalid
from imagebot.update.model import Why

if TYPE_CHECKING:
    from imagebot.gitops.gotemplate import GoMessage

log = logging.getLogger(__name__)


class Mode(StrEnum):
    PUSH = "push"
    PUSH_BRANCH = "push-branch"
    PULL_REQUEST = "pull-request"


class Status(StrEnum):
    NO_CHANGE = "no-change"
    DRY_RUN = "dry-run"
    PUSHED = "pushed"
    PR_OPENED = "pr-opened"
    PR_UPDATED = "pr-updated"
    PR_UNCHANGED = "pr-unchanged"


@dataclass(frozen=True, slots=True)
class Delivery:
    mode: Mode = Mode.PUSH
    branch: str = "main"
    path: str = ""
    push_branch: str | None = None
    environment: str = ""
    group: str = "default"
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    head_prefix: str = "imagebot/"
    templates: Templates = field(default_factory=Templates)
    go_message: GoMessage | None = None  # a Flux messageTemplate: the commit message, written verbatim
    refuse_commit: str = ""  # why no commit may be made (e.g. a signing key file mode cannot read): a UsageError
    why: Mapping[str, Why] = field(default_factory=dict)  # the facts behind each subject's change, for body and trailers

    @property
    def head_branch(self) -> str:
        return f"{self.head_prefix}{self.environment or 'default'}/{self.group}"


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    branch: str
    commit: str | None = None
    pr: PullRequest | None = None
    changes: ChangeSet = field(default_factory=lambda: ChangeSet(()))
    message: Rendered | None = None
    attempts: int = 1
    diff: str = ""
    skipped: tuple[Skipped, ...] = ()  # requested subjects the tree does not hold: failures, not current
    proposed: tuple[str, ...] = ()  # subjects only the pull request's branch holds, not the branch it targets


def requested_images(request: EditRequest) -> dict[str, ImageRef]:
    out = dict(request.policies)
    out.update({u.name.name: u.image for u in request.images})
    return out


def _edit(root: Path, request: EditRequest) -> ChangeSet:
    cs = walk.plan_tree(root, request)
    blocking = [p for p in cs.problems if p.kind in (ProblemKind.INPUT, ProblemKind.VERIFY)]
    if blocking:
        text = "; ".join(f"{p.file}:{p.line or '?'}: {p.message}" for p in blocking[:5])
        err = UsageError if blocking[0].kind is ProblemKind.INPUT else EditError
        raise err(f"nothing committed: {text}")
    return cs


def deliver(
    ws: Workspace,
    delivery: Delivery,
    request: EditRequest,
    forge: Forge | None = None,
    *,
    dry_run: bool = False,
    planner: Callable[[Path], ChangeSet] | None = None,
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
    rnd: random.Random | None = None,
) -> Result:
    if delivery.mode is Mode.PULL_REQUEST and not dry_run and forge is None:
        raise UsageError("pull-request mode needs a forge (a GitHub token and repository)")
    if delivery.mode is Mode.PUSH_BRANCH and not delivery.push_branch:
        raise UsageError("push-branch mode needs a branch to push to")
    rnd = rnd or random.Random()
    request, refused = refuse_invalid(request)
    if not request.policies and not request.images and planner is None:
        return Result(Status.NO_CHANGE, delivery.branch, skipped=refused)
    with ws.exclusive():  # sync, edit, commit and push on a work tree no one else touches meanwhile
        for attempt in range(1, attempts + 1):
            result = _attempt(ws, delivery, request, forge, dry_run, attempt, planner)
            if result is not None:
                return replace(result, skipped=refused + result.skipped) if refused else result
            wait = rnd.uniform(0, min(2.0, 0.05 * 2**attempt))
            log.info(
                "push to %s rejected (attempt %d/%d): fetching and re-applying in %.2fs", delivery.branch, attempt, attempts, wait
            )
            sleep(wait)
    raise GitError(f"gave up after {attempts} attempts: the remote branch kept moving (or a lease kept failing)")


def _root(ws: Workspace, delivery: Delivery) -> Path:
    root = (ws.dir / delivery.path).resolve()
    if root != ws.dir.resolve() and ws.dir.resolve() not in root.parents:
        raise UsageError(f"--path {delivery.path!r} leaves the repository")
    if not root.is_dir():
        raise UsageError(f"--path {delivery.path!r} is not a directory in {delivery.branch}")
    return root


def _attempt(
    ws: Workspace,
    d: Delivery,
    request: EditRequest,
    forge: Forge | None,
    dry_run: bool,
    attempt: int,
    planner: Callable[[Path], ChangeSet] | None = None,
) -> Result | None:
    target = d.branch
    lease: str | None = None
    if d.mode is Mode.PUSH_BRANCH:
        assert d.push_branch
        target = d.push_branch
        base = d.push_branch if ws.remote_sha(d.push_branch) else d.branch  # created from the checkout branch if missing
        ws.sync(base)
    elif d.mode is Mode.PULL_REQUEST:
        target = d.head_branch
        if not target.startswith(d.head_prefix):
            raise UsageError(f"refusing to force-push {target}: not a branch of the bot ({d.head_prefix}…)")
        lease = ws.remote_sha(target) or ""
        ws.sync(d.branch)
    else:
        ws.sync(d.branch)
    root = _root(ws, d)
    cs = _edit(root, request) if planner is None else planner(root)  # discovery plans from the tree it just synced
    if not cs.changed_files:  # nothing written: this plan is the read of what the branch holds
        return Result(Status.NO_CHANGE, target, changes=cs, attempts=attempt, skipped=confirm(cs, request))
    rendered = render(cs.changes, requested_images(request), d.templates, d.environment, d.group, d.why)
    if planner is not None and d.templates == Templates():  # discovery: the moves grouped by environment directory
        from imagebot.update.discover import summary

        title, body = summary(cs.changes, d.path)
        rendered = Rendered(title, f"{title}\n\n{body}", body)
    if d.go_message is not None:
        text = d.go_message.render(change_records(cs.changes, requested_images(request)))
        rendered = Rendered(rendered.title, text, rendered.body)
    if dry_run:
        diff = report.unified_diff(cs)
        return Result(
            Status.DRY_RUN, target, changes=cs, message=rendered, attempts=attempt, diff=diff, skipped=confirm(cs, request)
        )
    if d.refuse_commit:
        raise UsageError(d.refuse_commit)
    walk.apply(root, cs, durable=False)
    after = walk.reread(root, cs, request)
    if after.changes:
        where = ", ".join(sorted({c.file for c in after.changes}))
        raise EditError(f"nothing committed: {where} did not read back as written")
    skipped = confirm(after, request)
    sha = ws.commit(rendered.commit_message, verbatim=d.go_message is not None)
    assert sha is not None
    if d.mode is Mode.PULL_REQUEST:
        assert forge is not None and lease is not None
        failed = {s.subject for s in skipped}
        proposed = tuple(s.subject for s in confirm(cs, request, count_written=False) if s.subject not in failed)
        unchanged = bool(lease) and ws.tree_of(ws.fetch(target)) == ws.tree_of("HEAD")
        if not unchanged and ws.push(target, lease=lease, force_with_lease=True) is PushOutcome.REJECTED:
            return None
        pr = forge.find_open(target, d.branch)  # one read even when the branch is current: a lost PR is re-opened
        if unchanged and pr is not None and (pr.title, pr.body) == (rendered.title, rendered.body):
            return Result(Status.PR_UNCHANGED, target, lease, pr, cs, rendered, attempt, skipped=skipped, proposed=proposed)
        sha = lease if unchanged else sha
        ws.fence()  # a pull-request call is a write too (leader election)
        if pr is None:
            pr = forge.open(target, d.branch, rendered.title, rendered.body, d.labels, d.reviewers)
            return Result(Status.PR_OPENED, target, sha, pr, cs, rendered, attempt, skipped=skipped, proposed=proposed)
        pr = forge.update(pr, rendered.title, rendered.body, d.labels)
        return Result(Status.PR_UPDATED, target, sha, pr, cs, rendered, attempt, skipped=skipped, proposed=proposed)
    if ws.push(target) is PushOutcome.REJECTED:
        return None
    return Result(Status.PUSHED, target, sha, None, cs, rendered, attempt, skipped=skipped)
