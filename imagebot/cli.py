"""Command line: argument parsing only. Each command calls one function and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from imagebot import __version__, refs
from imagebot.errors import FAILURES, EditError, ExitCode, PolicyError, UsageError, exit_code_of
from imagebot.policy import DEFAULT_EXCLUDES, PolicyKind, PolicySpec, Selection, build
from imagebot.refs import ImageRef
from imagebot.update.model import ChangeSet, EditRequest, ImageUpdate, ProblemKind

EXIT_CODES = """exit codes:
  0  ok
  1  nothing selected (no tag qualifies); set: a --policy/--image matched nothing under PATH
  2  usage error: bad arguments, invalid policy, reference or configuration
  3  registry error: unreachable, auth failed, not found, rate-limited after retries
  4  an edit failed verification (that file was left untouched)
  5  git error (clone, fetch, commit, push)
  6  forge error (pull request API)
"""

SELECT_RULES = f"""policy rules:
  semver        Masterminds/semver v3 ranges as in Flux: '1.2.x', '~1.2', '^1.2', '>=1.0 <2.0',
                '>1.1, <2', '1.1 - 2', '!=1.3.0', '*', '=1.2.3', alternatives with '||'.
                Tags must be strict semver, a leading 'v' allowed ('1.2' and '1.2.3.4' are skipped).
                Pre-releases are admitted only when a comparator in the same '||' alternative
                carries one ('>=1.0.0-0' admits them, '>=1.0.0' does not). Build metadata never orders.
  numerical     asc selects the largest number, desc the smallest; integers and decimals
                ('-3', '1.5', '1e3'), compared exactly; anything else is skipped.
  alphabetical  asc selects the last tag in code-point order, desc the first.
  --pattern     a Python regex, searched (unanchored) as Flux does; Go's (?<name>...) works too.
  --extract     a template over the pattern's groups: $1, ${{1}}, $name, ${{name}}; $$ is a '$'.
                The policy orders the extracted values and prints the original tag.
  --exclude     a regex of tags never considered; adds to the defaults
                ({", ".join(DEFAULT_EXCLUDES)}) unless --no-default-excludes.
  orders are 'asc' or 'desc', case-insensitive.
ties:
  when tags rank equal ('1.0.0' and 'v1.0.0'; '1' and '1.0'; several tags extracting to one
  value) the tag greatest by Unicode code point wins ('v1.0.0', '1.0'), whatever the input order.
input:
  tags come from the arguments or, when there are none, from stdin one per line (surrounding
  whitespace and CR stripped, blank lines ignored). Put '--' before tags that start with '-'.
"""


SET_RULES = """rules:
  files         *.yaml, *.yml and Kustomization under PATH; symlinks leading outside PATH are not followed;
                files with template syntax ({{) are not parsed: a marker inside one is reported.
  values        only the bytes of the updated values change; quoting style is kept, and a new value that
                would change type if written plain (1.0, 20, yes) is double-quoted, as Flux does.
  safety        every edited file is re-parsed and must differ in exactly the intended values, or it is
                left untouched (exit 4); writes are atomic and keep the file mode.
  matching      a --policy or --image that no marker or image reference under PATH names is listed, and the
                exit code is 1 (the others are still written).
  IMAGE         must carry a tag or a digest (otherwise exit 2); a :tag marker fed a digest-only IMAGE,
                or a pinned digest that would go stale, is exit 2 with nothing written.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2) and a one-line hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--semver", metavar="RANGE", help="select the highest version in RANGE")
    g.add_argument("--alphabetical", metavar="{asc,desc}", help="select by code-point order")
    g.add_argument("--numerical", metavar="{asc,desc}", help="select by numeric value")
    p.add_argument("--pattern", metavar="REGEX", help="only tags matching REGEX (unanchored search)")
    p.add_argument("--extract", metavar="TEMPLATE", default="", help="order by this template over --pattern's groups")
    p.add_argument("--exclude", metavar="REGEX", action="append", default=[], help="never consider matching tags")
    p.add_argument("--no-default-excludes", action="store_true", help="drop the default signature/attestation excludes")
    p.add_argument("--explain", action="store_true", help="say for every tag whether it was kept and why")
    p.add_argument("--json", action="store_true", help="print the selection (with every verdict) as JSON")


def policy_spec_from_args(args: argparse.Namespace) -> PolicySpec:
    if args.semver is not None:
        kind, argument = PolicyKind.SEMVER, args.semver
    elif args.numerical is not None:
        kind, argument = PolicyKind.NUMERICAL, args.numerical
    else:
        kind, argument = PolicyKind.ALPHABETICAL, args.alphabetical
    if args.extract and args.pattern is None:
        raise PolicyError("--extract needs --pattern: the template refers to the pattern's groups")
    defaults = () if args.no_default_excludes else DEFAULT_EXCLUDES
    return PolicySpec(kind, argument, args.pattern, args.extract, tuple(defaults) + tuple(args.exclude))


def read_tags(args_tags: Sequence[str], stdin: TextIO) -> list[str]:
    if args_tags:
        return list(args_tags)
    return [line.strip() for line in stdin if line.strip()]


def _selection_json(sel: Selection) -> str:
    return json.dumps(
        {
            "policy": sel.policy,
            "selected": sel.winner,
            "reason": sel.reason,
            "tags": [{"tag": v.tag, "outcome": str(v.outcome), "value": v.value, "reason": v.reason} for v in sel.verdicts],
        },
        indent=2,
    )


def print_selection(sel: Selection, *, explain: bool, as_json: bool, out: TextIO, err: TextIO) -> int:
    if as_json:
        print(_selection_json(sel), file=out)
    elif explain:
        width = max((len(v.tag) for v in sel.verdicts), default=3)
        for v in sel.verdicts:
            print(f"{v.tag:<{width}}  {v.outcome:<12}  {v.reason}", file=err)
        print(f"=> {sel.reason}", file=err)
        if sel.winner is not None:
            print(sel.winner, file=out)
    elif sel.winner is not None:
        print(sel.winner, file=out)
    if sel.winner is None:
        if not explain or as_json:
            print(f"imagebot: nothing selected: {sel.reason}", file=err)
        return int(ExitCode.NOTHING)
    return int(ExitCode.OK)


def cmd_select(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    policy = build(policy_spec_from_args(args))  # invalid policy: exit 2 before reading any tag
    if args.cosign_key and not args.image:
        raise UsageError("--cosign-key needs --image: signatures are read from the image's registry")
    if args.image:
        if args.tags:
            raise UsageError("give tags or --image, not both")
        from imagebot.registry.commands import list_tags_for

        tags = list_tags_for(args, err)
    else:
        tags = read_tags(args.tags, stdin)
    if args.cosign_key:
        from imagebot.registry.commands import select_signed

        return print_selection(select_signed(args, policy, tags), explain=args.explain, as_json=args.json, out=out, err=err)
    if not (args.explain or args.json):
        winner = policy.select(tags)
        if winner is None:
            return print_selection(policy.explain(tags), explain=False, as_json=False, out=out, err=err)
        print(winner, file=out)
        return int(ExitCode.OK)
    return print_selection(policy.explain(tags), explain=args.explain, as_json=args.json, out=out, err=err)


_REF_RE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?")


def parse_policy_args(items: Sequence[str]) -> dict[str, ImageRef]:
    """``REF=IMAGE`` pairs; REF is ``namespace:name`` or ``name``; IMAGE carries a tag or digest."""
    out: dict[str, ImageRef] = {}
    for item in items:
        ref, sep, image = item.partition("=")
        if not sep or not ref or not image:
            raise UsageError(f"--policy {item!r}: expected REF=IMAGE, e.g. flux-system:app=ghcr.io/org/app:1.2.3")
        if not _REF_RE.fullmatch(ref):
            raise UsageError(f"--policy {item!r}: REF must be NAMESPACE:NAME or NAME (lower-case DNS labels)")
        if ref in out:
            raise UsageError(f"--policy {ref} given twice")
        out[ref] = refs.parse(image, require_version=True)
    return out


def parse_image_args(items: Sequence[str]) -> tuple[ImageUpdate, ...]:
    """``NAME=IMAGE`` pairs; NAME is a repository without tag, IMAGE carries a tag or digest."""
    out: dict[str, ImageUpdate] = {}
    for item in items:
        name, sep, image = item.partition("=")
        if not sep or not name or not image:
            raise UsageError(f"--image {item!r}: expected NAME=IMAGE, e.g. ghcr.io/org/app=ghcr.io/org/app:1.2.3")
        update = ImageUpdate(refs.parse_name(name), refs.parse(image, require_version=True))
        if update.name.canonical_name in out:
            raise UsageError(f"--image {name} given twice")
        out[update.name.canonical_name] = update
    return tuple(out.values())


def cmd_set(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from imagebot.update import report, walk

    if getattr(args, "discover", None):
        return _cmd_discover(args, out, err)
    request = EditRequest(policies=parse_policy_args(args.policy), images=parse_image_args(args.image))
    if not request.policies and not request.images:
        raise UsageError("nothing to set: give at least one --policy REF=IMAGE or --image NAME=IMAGE")
    root = Path(args.path)
    if not root.is_dir():
        raise UsageError(f"{args.path}: not a directory")
    cs = walk.plan_tree(root, request)
    problems = cs.problems
    if any(p.kind is ProblemKind.INPUT for p in problems):
        print(report.problems_text(cs), file=err)
        print("imagebot: error: the requested values cannot be written; nothing was written", file=err)
        return int(ExitCode.USAGE)
    written: list[str] = []
    if args.dry_run:
        if not args.json:
            print(report.unified_diff(cs), file=out, end="")
    else:
        try:
            written = walk.apply(root, cs)
        except OSError as exc:
            raise EditError(f"could not write: {exc}") from exc
    if args.json:
        print(report.as_json(cs, written), file=out)
    elif not args.dry_run:
        print(report.as_text(cs), file=out)
    if problems:
        print(report.problems_text(cs), file=err)
    if any(p.kind is ProblemKind.VERIFY for p in problems):
        return int(ExitCode.EDIT)
    unmatched = _unmatched(cs, request)
    for flag in unmatched:
        print(f"imagebot: {flag} matched nothing under {args.path}: no marker or image reference names it", file=err)
    return int(ExitCode.NOTHING if unmatched else ExitCode.OK)


def _discover_planner(args: argparse.Namespace, err: TextIO) -> Callable[[Path], ChangeSet]:
    """Discovery as a planner of a tree: list each distinct repository once, edit every reference within its policy.
    What it leaves alone (not semver, pinned, a failed listing) is said on ``err``."""
    from imagebot.registry.commands import registries_from_args
    from imagebot.registry.scanner import Scanner
    from imagebot.update import discover, walk

    if args.policy or args.image:
        raise UsageError("--discover takes no --policy/--image: it finds the references itself")
    keep = discover.Filter(tuple(args.include), tuple(args.exclude))
    scanner = Scanner(registries_from_args(args))

    def planner(root: Path) -> ChangeSet:
        texts, read_problems = walk.read_tree(root)
        found: dict[str, list[discover.Found]] = {}
        for label, text in texts.items():
            refs_ = [f for f in discover.find_references(label, text)[0] if keep.admits(f.name)]
            if refs_:
                found[label] = refs_
        results = scanner.scan(f.name for fs in found.values() for f in fs if discover.movable(f))
        listings = {repo: (r.tags if r.ok else (r.error or "failed")) for repo, r in results.items()}
        planned = discover.plan(texts, found, listings, discover.Level(args.discover))
        for p in (*read_problems, *planned.skipped):
            print(f"imagebot: note: {p.file}{f':{p.line}' if p.line else ''}: {p.kind}: {p.message}", file=err)
        return ChangeSet(planned.edits)

    return planner


def _cmd_discover(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``set --discover LEVEL`` on a local tree."""
    from imagebot.update import report, walk

    root = Path(args.path)
    if not root.is_dir():
        raise UsageError(f"{args.path}: not a directory")
    cs = _discover_planner(args, err)(root)
    written: list[str] = []
    if args.dry_run:
        if not args.json:
            print(report.unified_diff(cs), file=out, end="")
    else:
        try:
            written = walk.apply(root, cs)
        except OSError as exc:
            raise EditError(f"could not write: {exc}") from exc
    if args.json:
        print(report.as_json(cs, written), file=out)
    elif not args.dry_run:
        print(report.as_text(cs), file=out)
    for p in cs.problems:
        print(f"imagebot: note: {p.file}{f':{p.line}' if p.line else ''}: {p.kind}: {p.message}", file=err)
    if any(p.kind is ProblemKind.VERIFY for p in cs.problems):
        return int(ExitCode.EDIT)
    return int(ExitCode.OK if cs.changed_files else ExitCode.NOTHING)


def _unmatched(cs: ChangeSet, request: EditRequest) -> list[str]:
    """The --policy / --image flags for which no file holds a place (nor reported a problem about one)."""
    seen = {p.subject for p in cs.places} | {s for p in cs.problems for s in p.subjects}
    flags = [f"--policy {ref}" for ref in request.policies if ref not in seen]
    return flags + [f"--image {u.name.name}" for u in request.images if u.name.name not in seen]


def cmd_update(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from imagebot.gitops.commands import run_update

    request = EditRequest(policies=parse_policy_args(args.policy), images=parse_image_args(args.image))
    return run_update(args, request, out, err, _discover_planner(args, err) if args.discover else None)


Command = Callable[[argparse.Namespace, TextIO, TextIO, TextIO], int]


def _add_discover_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--discover",
        choices=("patch", "minor", "major"),
        help="no --image/--policy: move every image reference found to the newest semver tag within its current "
        "major.minor (patch), major (minor) or any (major); non-semver tags and digest pins are skipped and reported",
    )
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="with --discover: only these repositories")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="with --discover: not these repositories")


# Commands whose parsers live outside imagebot.runtime.commands, by the module that defines them: a command line
# naming one of them (or one of the runtime's) builds that group's parser alone, so `imagebot run` never imports
# the Flux template engine, the Secret formats or the controller (~60 ms of a cold start).
_CORE = frozenset({"select", "tags", "digest", "set", "update"})
_FLUX = frozenset({"template", "secret"})
_CONTROLLER = frozenset({"controller"})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only`` (a command name), just the group that defines that command (the full
    parser when it is no command of a group: the caller falls back to it for an unknown name)."""

    def want(group: frozenset[str] | None) -> bool:
        if only is None:
            return True
        if group is None:  # the runtime's commands: whatever the other groups do not name
            return only not in _CORE | _FLUX | _CONTROLLER
        return only in group

    parser = _Parser(
        prog="imagebot",
        description="Image automation for GitOps: scan registries, select tags by policy, edit YAML, commit or open PRs.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imagebot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parser.set_defaults(_commands=sub.choices)
    if want(_CORE):
        _add_core(sub)
    if want(None):
        from imagebot.runtime.commands import add_flags

        add_flags(sub, EXIT_CODES)
    if want(_FLUX):
        from imagebot import fluxcmd

        fluxcmd.add_flags(sub, EXIT_CODES)
    if want(_CONTROLLER):
        from imagebot.controller.cli import add_flags as add_controller_flags

        add_controller_flags(sub, EXIT_CODES)
    return parser


def _add_core(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from imagebot.registry.commands import add_registry_flags, cmd_digest, cmd_tags

    sel = sub.add_parser(
        "select",
        help="select the newest allowed tag from a list (or a registry with --image)",
        description="Select the newest tag allowed by a policy. Prints the tag exactly as written.",
        epilog=SELECT_RULES + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_policy_flags(sel)
    sel.add_argument("--image", metavar="IMAGE", help="list the tags of this repository from its registry instead of TAG/stdin")
    sel.add_argument(
        "--cosign-key",
        metavar="FILE",
        action="append",
        default=[],
        help="only a tag whose cosign signature verifies with this public key (PEM, ECDSA P-256 or Ed25519; "
        "repeatable: any of them); needs --image",
    )
    add_registry_flags(sel)
    sel.add_argument("tags", nargs="*", metavar="TAG", help="candidate tags (default: stdin, one per line)")
    sel.set_defaults(func=cmd_select)

    tg = sub.add_parser(
        "tags",
        help="list every tag of a repository, one per line",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tg.add_argument("image", metavar="IMAGE", help="repository, e.g. ghcr.io/org/app or localhost:5000/app")
    tg.add_argument("--json", action="store_true")
    add_registry_flags(tg)
    tg.set_defaults(func=cmd_tags)

    dg = sub.add_parser(
        "digest",
        help="print the manifest digest (sha256:...) of IMAGE:TAG",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dg.add_argument("image", metavar="IMAGE:TAG")
    dg.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the platform's manifest inside an image index")
    dg.add_argument("--json", action="store_true")
    add_registry_flags(dg)
    dg.set_defaults(func=cmd_digest)

    st = sub.add_parser(
        "set",
        help="rewrite image references under PATH (setter markers and marker-free), byte-exact",
        description="Rewrite image references in the YAML files under PATH, changing only the value bytes. "
        '--policy feeds Flux setter markers (# {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}); --image feeds '
        "marker-free updates of container images, Kustomize images: entries and Helm values by exact repository name.",
        epilog=SET_RULES + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("path", metavar="PATH", help="the directory tree to edit")
    st.add_argument("--policy", action="append", default=[], metavar="REF=IMAGE", help="NS:NAME or NAME = new image")
    st.add_argument("--image", action="append", default=[], metavar="NAME=IMAGE", help="repository = new image")
    st.add_argument("--dry-run", action="store_true", help="print a unified diff and write nothing")
    st.add_argument("--json", action="store_true", help="print the change set as JSON")
    _add_discover_flags(st)
    add_registry_flags(st)
    st.set_defaults(func=cmd_set)

    from imagebot.gitops.commands import ENV_HELP, add_update_flags

    up = sub.add_parser(
        "update",
        help="clone/fetch the config repo, apply the edits of 'set', commit, push or open/update a PR",
        description="Apply the edits of 'imagebot set' to a config repository and deliver them: push to the branch, "
        "push to another branch, or open/update one pull request per environment and group. Prints the commit SHA and "
        "PR URL, or 'no change'. A rejected push is answered by fetching and re-applying the edit on the new tip.",
        epilog=ENV_HELP + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_update_flags(up)
    up.add_argument("--policy", action="append", default=[], metavar="REF=IMAGE", help="NS:NAME or NAME = new image")
    up.add_argument("--image", action="append", default=[], metavar="NAME=IMAGE", help="repository = new image")
    _add_discover_flags(up)
    add_registry_flags(up)
    up.set_defaults(func=cmd_update)


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    stdin = stdin or sys.stdin
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv and not argv[0].startswith("-") else None
    parser = build_parser(first)
    if first is not None and first not in parser.get_default("_commands"):
        parser = build_parser()  # an unknown command: the full parser names every choice
    try:
        args = parser.parse_args(argv)
        func: Command = args.func
        return func(args, out, err, stdin)
    except SystemExit as exc:  # --help, --version
        return int(exc.code) if isinstance(exc.code, int) else int(ExitCode.USAGE)
    except FAILURES as exc:
        print(f"imagebot: error: {exc}", file=err)
        return int(exit_code_of(exc))
    except KeyboardInterrupt:
        return 130


__all__ = ["UsageError", "build_parser", "main"]
