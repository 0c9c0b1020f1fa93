"""``discover:`` entries in the polling runtime (`imagebot run`, `run --once`, `serve`).

Each entry is delivered like an environment's group: the config repository is synced, the references under
the entry's path found (the finders of :mod:`imagebot.update.discover`), each distinct repository listed once
per pass through the runner's scanner, the plan made relative to each current tag, and the moves delivered as
one commit (or one pull request) whose message and body group them by environment path. Repositories
configured under ``images:`` are left to their own policies. One repository's failed listing is that
repository's: recorded, counted and shown in status, while the others still move.

State rows (image ``discover:REPOSITORY``, environment ``GIT:ENV-PATH``) record only what Git holds: the tag
the branch has after the push, or, with a pull request, the tag still on the branch and the proposed one as
pending; rows of references that left the tree are dropped. A repository whose listing failed backs off (the
runner's backoff, keyed by its row) unless a webhook names it.

The runner imports this module only when the config has a ``discover:`` entry, so importing the runner here
makes no cycle.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gitopskit.notify import EventType
from imagebot.config.model import DiscoverConfig, Purpose
from imagebot.errors import FAILURES, ExitCode, exit_code_of
from imagebot.gitops.message import Templates
from imagebot.gitops.writer import Delivery, Mode, Result, Status, deliver
from imagebot.refs import ImageRef, try_parse
from imagebot.registry.scanner import ScanResult
from imagebot.runtime.runner import _AUTH_REFUSED, PassReport, Runner, _utc, flux_delivery
from imagebot.runtime.state import DISCOVERED
from imagebot.update import ChangeSet, EditRequest, walk
from imagebot.update import discover as disc
from imagebot.update.model import Problem

log = logging.getLogger(__name__)

ROW_PREFIX = DISCOVERED  # the image column of a discovered reference's state rows (the dashboard reads it back)


def row_image(repository: str) -> str:
    return f"{ROW_PREFIX}{repository}"


def row_environment(entry: DiscoverConfig, file: str) -> str:
    """``GIT:ENV-PATH``: the git entry, and the environment directory under the repository root."""
    return f"{entry.git}:{_env_path(entry, file)}"


def _env_path(entry: DiscoverConfig, file: str) -> str:
    base = entry.path.strip("/")
    env = disc.environment(file)
    if not base:
        return env
    return base if env == "." else f"{base}/{env}"


def _in_scope(entry: DiscoverConfig, image: str, environment: str) -> bool:
    """Whether a state row is one of ``entry``'s (a discovered reference under its path in its git)."""
    base = entry.path.strip("/")
    scope = f"{entry.git}:{base}"
    inside = environment.startswith(scope) if not base else environment == scope or environment.startswith(scope + "/")
    return image.startswith(ROW_PREFIX) and inside


def group_of(entry: DiscoverConfig) -> str:
    """The pull request's group (its head branch is ``imagebot/discover/GROUP``): the path, made a safe branch part."""
    path = re.sub(r"[^A-Za-z0-9._/-]+", "-", entry.path.strip("/")).replace("..", "-").strip("/.-")
    return path or "root"


@dataclass
class Seen:
    """What the last plan read from the synced tree (filled in by the planner, read after the delivery)."""

    found: dict[str, list[disc.Found]] = field(default_factory=dict)
    skipped: tuple[Problem, ...] = ()
    read_problems: list[Problem] = field(default_factory=list)


class Discovery:
    """The runner's ``discover:`` entries: when each is due, what it found last, and one pass over the due ones."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.entries = runner.cfg.discover
        self._last: dict[str, float] = {}
        self.repositories: dict[str, set[str]] = {}  # entry → the repositories its last pass found (webhooks)
        self._only: set[str] = set()  # the repositories a webhook named in this pass: listed even when backing off

    def next_at(self, entry: DiscoverConfig) -> float:
        return self._last.get(entry.name, -1e18) + (entry.interval_seconds or self.runner.cfg.interval_seconds)

    def due(self, now: float, only: set[str] | None) -> list[DiscoverConfig]:
        """Entries whose interval has passed, or (a webhook) those whose last pass found one of ``only``."""
        if only is not None:
            return [e for e in self.entries if self.repositories.get(e.name, set()) & only]
        return [e for e in self.entries if self.next_at(e) <= now]

    def run(self, entries: Iterable[DiscoverConfig], report: PassReport, now: float, only: set[str] | None = None) -> None:
        """One pass over ``entries``: a listing per repository shared by all of them, each entry delivered on its own.
        A repository backing off after failures is not listed (unless a webhook named it: ``only``)."""
        listings: dict[str, ScanResult] = {}
        self._only = only or set()
        for entry in entries:
            self._last[entry.name] = now
            try:
                self._entry(entry, listings, report, now)
            except Exception as exc:  # _entry answers its own failures; this is a bug's last line
                log.exception("discover %s: unexpected failure", entry.name)
                report.fail(ExitCode.GIT, f"discover {entry.name}: {type(exc).__name__}: {exc}")
            self.runner.state.flush()

    # ------------------------------------------------------------------ one entry
    def _scan(self, repos: dict[str, ImageRef], listings: dict[str, ScanResult], report: PassReport, now: float) -> None:
        """List the repositories not listed yet in this pass; each failure is that repository's."""
        r = self.runner
        missing = []
        for name, ref in repos.items():
            if name in listings:
                continue
            retry = r.backoff.waiting((row_image(name), ""), now) if name not in self._only else None
            if retry is None:
                missing.append(ref)
            else:  # not listed: the failure stands until its retry is due
                why = f"backing off after {retry.failures} failure(s), next attempt {_utc(retry.at)}: {retry.error}"
                listings[name] = ScanResult(name, (), (), why, 0.0)
        for name, result in r.scanner.scan(missing).items():  # every failure answered as that repository's
            listings[name] = result
            registry = repos[name].canonical_registry
            key = (row_image(name), "")
            if result.ok:
                r.backoff.succeeded(key)
            else:
                r.backoff.failed(key, now, result.error or "scan failed")
            r.metrics.scans.labels("ok" if result.ok else "error").inc()
            r.metrics.scan_seconds.observe(result.seconds)
            if result.ok:
                r.metrics.tags.labels(name).set(len(result.tags))
                r._peer(f"registry {registry}", now, None)
            else:
                r.metrics.errors.labels("registry").inc()
                r._peer(f"registry {registry}", now, result.error or "scan failed")
                report.fail(ExitCode.REGISTRY, f"discover: {name}: registry {registry}: {result.error or 'scan failed'}")

    def _entry(self, entry: DiscoverConfig, listings: dict[str, ScanResult], report: PassReport, now: float) -> None:
        r = self.runner
        g = r.cfg.git_by_name(entry.git)
        configured = {i.repository.canonical_name for i in r.cfg.images}  # their own policies win
        keep = disc.Filter(entry.include, entry.exclude)
        level = disc.Level(str(entry.level))
        seen = Seen()

        def planner(root: Path) -> ChangeSet:
            texts, read_problems = walk.read_tree(root)
            found: dict[str, list[disc.Found]] = {}
            for label, text in texts.items():
                refs_ = [
                    f
                    for f in disc.find_references(label, text)[0]
                    if keep.admits(f.name) and f.name.canonical_name not in configured
                ]
                if refs_:
                    found[label] = refs_
            movable = {f.name.canonical_name: f.name for fs in found.values() for f in fs if disc.movable(f)}
            self._scan(movable, listings, report, now)
            current = {n: (s.tags if s.ok else (s.error or "scan failed")) for n, s in listings.items() if n in movable}
            planned = disc.plan(texts, found, current, level)
            seen.found, seen.skipped, seen.read_problems = found, planned.skipped, read_problems
            return ChangeSet(planned.edits)

        delivery = Delivery(
            entry.mode,
            g.branch,
            entry.path,
            entry.push_branch,
            "discover",
            group_of(entry),
            entry.labels,
            entry.reviewers,
            templates=Templates(),  # the moves grouped by environment path (imagebot.update.discover.summary)
            **flux_delivery(g),
        )
        try:
            ws = r._workspace_for(g)
            ws.fence = r.fence
            forge = r._forge(g) if entry.mode is Mode.PULL_REQUEST else None
            result = deliver(ws, delivery, EditRequest(), forge, planner=planner)
        except Exception as exc:  # this entry's failure: the pass goes on
            code = exit_code_of(exc) if isinstance(exc, FAILURES) else ExitCode.GIT
            if code is ExitCode.GIT:
                r._peer(f"git {g.name}", r.clock(), str(exc))
            if not isinstance(exc, FAILURES):
                log.exception("discover %s: delivery failed", entry.name)
            message = f"discover {entry.name}: delivery to {g.name} failed: {exc}"
            needed = [u for u in g.unresolved if u.purpose is Purpose.GIT_AUTH]
            if needed and code is ExitCode.GIT and _AUTH_REFUSED.search(str(exc)):  # file mode: the Secret was needed
                message = needed[0].needed(f"discover {entry.name}: the remote asked for credentials")
            report.fail(code, message)
            r.metrics.errors.labels(code.name.lower()).inc()
            self._note_failure(entry, seen, message, now)
            log.error("%s", message)
            return
        r._peer(f"git {g.name}", r.clock(), None)
        report.results.append((f"discover {entry.name}", result))
        self.repositories[entry.name] = {f.name.canonical_name for fs in seen.found.values() for f in fs}
        for p in (*seen.read_problems, *seen.skipped):
            where = f"{entry.path.strip('/')}/{p.file}" if entry.path.strip("/") else p.file
            log.info("discover %s: %s%s: %s", entry.name, where, f":{p.line}" if p.line else "", p.message)
        self._record(entry, seen, result, now)
        if result.status is Status.PUSHED:
            r.metrics.commits.inc()
        elif result.status in (Status.PR_OPENED, Status.PR_UPDATED):
            r.metrics.prs.labels(str(result.status)).inc()
        self._announce(entry, result)
        log.info("discover %s → %s: %s %s", entry.name, entry.mode, result.status, result.commit or "")

    # ------------------------------------------------------------------ state
    def _record(self, entry: DiscoverConfig, seen: Seen, result: Result, now: float) -> None:
        """One row per repository and environment path: what the branch holds after this delivery."""
        r = self.runner
        moved: dict[tuple[str, str], str] = {}  # (file, name as spelled) → the tag written
        for c in result.changes.changes:
            ref = try_parse(c.new)
            moved[(c.file, c.subject)] = ref.tag if ref is not None and ref.tag else c.new
        why: dict[tuple[str, str], str] = {}  # (file, canonical) → why left alone
        for p in seen.skipped:
            for subject in p.subjects or ():
                named = try_parse(subject)
                if named is not None:
                    why[(p.file, named.canonical_name)] = p.message
        rows: dict[tuple[str, str], dict[str, set[str]]] = {}
        for file, refs_ in seen.found.items():
            for f in refs_:
                key = (row_image(f.name.canonical_name), row_environment(entry, file))
                row = rows.setdefault(key, {"held": set(), "digest": set(), "new": set(), "why": set()})
                new_tag = moved.get((file, f.name.name))
                row["held"].add(f.tag or "")
                if f.digest:
                    row["digest"].add(f.digest)
                if new_tag is not None:
                    row["new"].add(new_tag)
                elif (file, f.name.canonical_name) in why:
                    row["why"].add(why[(file, f.name.canonical_name)])
        pr = result.pr.url if result.pr is not None else None
        pushed = result.status is Status.PUSHED
        proposed = result.status in (Status.PR_OPENED, Status.PR_UPDATED, Status.PR_UNCHANGED)
        for (image, env), row in sorted(rows.items()):
            held = ", ".join(sorted(t for t in row["held"] if t)) or None
            digest = next(iter(row["digest"])) if len(row["digest"]) == 1 else None
            new = ", ".join(sorted(row["new"])) or None
            if new is not None and pushed:
                reason = f"{result.status}: {held} → {new} (discover {entry.level})"
                r.state.record(image, env, reason=reason, pending=None, now=now, tag=new, digest=None, commit=result.commit)
                r.metrics.selections.labels(image, env).inc()
            elif new is not None and proposed:
                reason = f"{result.status}: {new} proposed in {pr}, current once merged (discover {entry.level})"
                r.state.record(image, env, reason=reason, pending=new, now=now, tag=held or "", digest=digest, pr=pr)
                r.metrics.selections.labels(image, env).inc()
            else:
                reason = "; ".join(sorted(row["why"])) or f"up to date within {entry.level}"
                r.state.record(image, env, reason=reason, pending=None, now=now, tag=held or "", digest=digest)
        gone = [
            (row.image, row.environment)
            for row in r.state.all()
            if _in_scope(entry, row.image, row.environment) and (row.image, row.environment) not in rows
        ]
        r.state.forget(gone)  # references no longer in the tree: Git holds nothing of theirs

    def _note_failure(self, entry: DiscoverConfig, seen: Seen, message: str, now: float) -> None:
        """Status says why: on the rows this plan found, else (nothing read: the sync failed) on the entry's rows."""
        rows = {(row_image(f.name.canonical_name), row_environment(entry, file)) for file, fs in seen.found.items() for f in fs}
        if not rows:
            rows = {
                (row.image, row.environment) for row in self.runner.state.all() if _in_scope(entry, row.image, row.environment)
            }
        for image, env in sorted(rows):
            self.runner.state.note(image, env, reason=f"failed: {message}", now=now)

    def _announce(self, entry: DiscoverConfig, result: Result) -> None:
        name = f"discover {entry.name}"
        if result.status is Status.PUSHED:
            message = f"{len(result.changes.changes)} discovered update(s) pushed to {result.branch}"
            self.runner._emit(EventType.COMMIT_PUSHED, name, message, entry.path or ".", commit=result.commit)
        elif result.status in (Status.PR_OPENED, Status.PR_UPDATED) and result.pr is not None:
            kind = EventType.PR_OPENED if result.status is Status.PR_OPENED else EventType.PR_UPDATED
            message = f"{len(result.changes.changes)} discovered update(s) in {result.pr.url}"
            self.runner._emit(kind, name, message, entry.path or ".", pr=result.pr.url)
