"""`imagebot update`: clone/fetch, edit, commit, push or open/update the pull request."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from gitopskit.workspace import GitAuth, Identity, Workspace, safe_url
from imagebot.errors import ExitCode, UsageError
from imagebot.gitops.writer import Delivery, Mode, Result, Status, deliver
from imagebot.update import ChangeSet, EditRequest, report
from imagebot.update.model import Why

ENV_HELP = """credentials (from the environment, never from arguments):
  IMAGEBOT_GIT_USERNAME, IMAGEBOT_GIT_TOKEN   HTTPS (sent as an http.extraHeader, never in the URL)
  IMAGEBOT_GIT_SSH_KEY, IMAGEBOT_GIT_KNOWN_HOSTS   SSH deploy key and the known_hosts to verify the host
  IMAGEBOT_GITHUB_TOKEN                        the GitHub API (pull requests)
"""


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagebot" / "git"


def add_update_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", required=True, metavar="URL", help="the config repository (https://… or ssh://…)")
    p.add_argument("--branch", default="main", help="the branch to check out (default main)")
    p.add_argument("--path", default="", metavar="DIR", help="edit only under DIR of the repository")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--push-branch", metavar="B", help="push to branch B (created from --branch if missing)")
    mode.add_argument("--pull-request", action="store_true", help="open or update a pull request")
    p.add_argument("--environment", default="", help="names the update (PR head imagebot/<environment>/<group>)")
    p.add_argument("--group", default="default", help="update group (one PR per environment and group)")
    p.add_argument("--label", action="append", default=[], help="PR label (repeatable)")
    p.add_argument("--reviewer", action="append", default=[], help="PR reviewer (repeatable)")
    p.add_argument(
        "--github-api",
        default="https://api.github.com",
        metavar="URL",
        help="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)",
    )
    p.add_argument("--github-repo", metavar="OWNER/NAME", help="default: taken from --repo")
    p.add_argument("--author-name", default="imagebot")
    p.add_argument("--author-email", default="imagebot@users.noreply.invalid")
    p.add_argument("--signing-key", metavar="FILE", help="sign commits with this key (see --signing-format)")
    p.add_argument("--signing-format", default="ssh", choices=["ssh", "openpgp", "x509"])
    p.add_argument("--cache-dir", metavar="DIR", help=f"workspace cache (default {default_cache()})")
    p.add_argument("--dry-run", action="store_true", help="print the diff and the commit message; write nothing")
    p.add_argument("--json", action="store_true")


def auth_from_env() -> GitAuth:
    env = os.environ
    key = env.get("IMAGEBOT_GIT_SSH_KEY")
    known = env.get("IMAGEBOT_GIT_KNOWN_HOSTS")
    return GitAuth(
        username=env.get("IMAGEBOT_GIT_USERNAME"),
        password=env.get("IMAGEBOT_GIT_TOKEN"),
        ssh_key=Path(key) if key else None,
        known_hosts=Path(known) if known else None,
    )


def github_repo_from_url(url: str) -> str | None:
    m = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", url)
    return m.group(1) if m else None


def result_json(r: Result) -> str:
    return json.dumps(
        {
            "status": str(r.status),
            "branch": r.branch,
            "commit": r.commit,
            "pull_request": None if r.pr is None else {"number": r.pr.number, "url": r.pr.url, "title": r.pr.title},
            "attempts": r.attempts,
            "title": r.message.title if r.message else None,
            "changes": json.loads(report.as_json(r.changes))["changes"],
            "skipped": [{"subject": s.subject, "reason": s.reason} for s in r.skipped],
        },
        indent=2,
    )


def run_update(
    args: argparse.Namespace,
    request: EditRequest,
    out: TextIO,
    err: TextIO,
    planner: Callable[[Path], ChangeSet] | None = None,
) -> int:
    if not request.policies and not request.images and planner is None:
        raise UsageError("nothing to update: give at least one --policy REF=IMAGE or --image NAME=IMAGE")
    mode = Mode.PULL_REQUEST if args.pull_request else Mode.PUSH_BRANCH if args.push_branch else Mode.PUSH
    identity = Identity(
        args.author_name, args.author_email, Path(args.signing_key) if args.signing_key else None, args.signing_format
    )
    ws = Workspace(args.repo, args.branch, Path(args.cache_dir) if args.cache_dir else default_cache(), auth_from_env(), identity)
    forge = None
    if mode is Mode.PULL_REQUEST and not args.dry_run:
        token = os.environ.get("IMAGEBOT_GITHUB_TOKEN")
        if not token:
            raise UsageError("--pull-request needs IMAGEBOT_GITHUB_TOKEN in the environment")
        repo = args.github_repo or github_repo_from_url(args.repo)
        if not repo:
            raise UsageError(f"cannot tell the GitHub repository from {safe_url(args.repo)}: give --github-repo OWNER/NAME")
        from imagebot.forge.github import GitHubForge

        forge = GitHubForge(repo, token, args.github_api, throttle=os.environ.get("IMAGEBOT_GITHUB_THROTTLE", "1") != "0")
    # what a hand-given edit knows: the environment and that it was asked for (no policy, scan or signature check)
    why = Why(environment=args.environment, reason="requested with imagebot update")
    subjects = [*request.policies, *(u.name.name for u in request.images)]
    delivery = Delivery(
        mode, args.branch, args.path, args.push_branch, args.environment, args.group, tuple(args.label), tuple(args.reviewer),
        why={s: why for s in subjects},
    )
    result = deliver(ws, delivery, request, forge, dry_run=args.dry_run, planner=planner)
    if args.json:
        print(result_json(result), file=out)
    elif result.status is Status.NO_CHANGE:
        if not result.skipped:
            print("no change", file=out)
    elif result.status is Status.DRY_RUN:
        assert result.message is not None
        print(result.diff, file=out, end="")
        print(f"\n# commit message:\n{result.message.commit_message}", file=out, end="")
    else:
        print(result.commit or "", file=out)
        if result.pr is not None:
            print(result.pr.url, file=out)
    skipped = {s.subject for s in result.skipped}
    for p in result.changes.problems:  # the ones behind a skip are said below, with their subject
        if not skipped.intersection(p.subjects):
            print(f"imagebot: note: {p.file}{f':{p.line}' if p.line else ''}: {p.kind}: {p.message}", file=err)
    for s in result.skipped:
        print(f"imagebot: error: {s.subject} not updated: {s.reason}", file=err)
    if any(not s.unmatched for s in result.skipped):  # what could be written is committed; the rest failed
        return int(ExitCode.EDIT)
    return int(ExitCode.NOTHING if result.skipped else ExitCode.OK)  # as `set`: a flag that matched nothing
