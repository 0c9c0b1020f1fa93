"""Commit message, PR title and PR body rendered from a change set (pure, deterministic).

Templates are Jinja2 in a sandbox (no attribute tricks, no I/O) with strict undefined names;
their context holds only the change set and the names given — no clock, no environment, so the
same update always renders the same text and a re-run finds nothing new to say.

The default templates are also written out in Python (:func:`_default_title` …), which renders them when the
user kept them: a cold ``run --once`` neither imports Jinja2 nor compiles templates, and the sandbox's attribute
checks (most of the rendering time) are spent on user templates only. A test holds the two spellings equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagebot.errors import ConfigError
from imagebot.gitops import explain
from imagebot.refs import ImageRef, try_parse
from imagebot.update.model import Change, Target, Why

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

    from imagebot.gitops.gotemplate import ChangeRecord

DEFAULT_TITLE = (
    "chore(images): "
    "{% if images|length == 1 %}{{ images[0].short }} {{ images[0].old }} → {{ images[0].new }}"
    "{% else %}update {{ images|length }} images{% endif %}"
    "{% if environment %} ({{ environment }}){% endif %}"
)
DEFAULT_COMMIT = (
    "{{ title }}\n\n"
    "{% for i in images %}- {{ i.image }}: {{ i.old }} → {{ i.new }}{% if i.digest %} ({{ i.digest }}){% endif %}\n"
    "{% for f in i.files %}  {{ f }}\n{% endfor %}{% endfor %}"
    "{% if trailers %}\n{{ trailers }}\n{% endif %}"
)
DEFAULT_BODY = (
    "Automated image update{% if environment %} for **{{ environment }}**{% endif %} by imagebot.\n\n"
    "| image | from | to | digest | files |\n|---|---|---|---|---|\n"
    "{% for i in images %}| `{{ i.image }}` | {{ i.old }} | {{ i.new }} | {{ i.digest or '—' }} | "
    "{{ i.files|join('<br>') }} |\n{% endfor %}"
    "{% if details %}\n{{ details }}\n{{ rollback }}\n{% endif %}"
    "\n<details><summary>{{ changes|length }} change{{ '' if changes|length == 1 else 's' }}</summary>\n\n"
    "{% for c in changes %}- `{{ c.file }}:{{ c.line }}` {{ c.field }} ({{ c.target }}): `{{ c.old }}` → `{{ c.new }}`\n"
    "{% endfor %}\n</details>\n"
)


@dataclass(frozen=True, slots=True)
class ImageSummary:
    image: str  # the repository as requested, e.g. ghcr.io/org/app
    short: str  # its last path component, e.g. app
    old: str  # the version(s) replaced, e.g. 1.2.3 (several joined by ", ")
    new: str  # the new version: tag, or digest when there is no tag
    digest: str  # the new digest, or ""
    files: tuple[str, ...]
    why: Why | None = None  # the facts behind the change, when the caller knows them
    compare_url: str = ""  # the source repository's compare view between the old and new revision, or ""


@dataclass(frozen=True, slots=True)
class Templates:
    title: str = DEFAULT_TITLE
    commit: str = DEFAULT_COMMIT
    body: str = DEFAULT_BODY


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    commit_message: str
    body: str


def _version(value: str, target: Target) -> str:
    if target in (Target.SETTER_TAG, Target.HELM) or target is Target.KUSTOMIZE:
        return value
    ref = try_parse(value)
    if ref is None:
        return value
    return ref.tag or (ref.digest or "")


def summarize(
    changes: tuple[Change, ...], requested: Mapping[str, ImageRef], why: Mapping[str, Why] | None = None
) -> tuple[tuple[ImageSummary, explain.Explained | None], ...]:
    """One line per requested image that changed, in a stable order (``why`` by subject: the facts known), each
    with its explanation when its facts are known: explained once, for the summary's compare link and the body."""
    by_subject: dict[str, list[Change]] = {}
    for c in changes:
        by_subject.setdefault(c.subject, []).append(c)
    out = []
    for subject in sorted(by_subject):
        group = by_subject[subject]
        new_ref = requested.get(subject)
        olds = sorted(
            {_version(c.old, c.target) for c in group if c.target not in (Target.SETTER_NAME, Target.SETTER_DIGEST)} - {""}
        )
        if new_ref is None:
            image, new, digest = subject, group[0].new, ""
        else:
            image, new, digest = new_ref.name, new_ref.tag or (new_ref.digest or ""), new_ref.digest or ""
        old = ", ".join(olds) or "(unset)"
        facts = (why or {}).get(subject)
        explained = explain.explain(image, old, new, facts) if facts is not None else None
        files = tuple(sorted({c.file for c in group}))
        url = explained.compare_url if explained is not None else ""
        out.append((ImageSummary(image, image.rsplit("/", 1)[-1], old, new, digest, files, facts, url), explained))
    return tuple(out)


@functools.cache
def _env() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a usable template (a syntax error), or None: checked when the config loads."""
    from jinja2 import TemplateError

    try:
        _env().from_string(text)
    except TemplateError as exc:
        return f"template error: {exc}"
    return None


# The defaults above, in Python: the same text for the same context (see the module's docstring).
def _default_title(ctx: Mapping[str, Any]) -> str:
    images, env = ctx["images"], ctx["environment"]
    what = f"{images[0].short} {images[0].old} → {images[0].new}" if len(images) == 1 else f"update {len(images)} images"
    return f"chore(images): {what}" + (f" ({env})" if env else "")


def _default_commit(ctx: Mapping[str, Any]) -> str:
    out = [f"{ctx['title']}\n\n"]
    for i in ctx["images"]:
        out.append(f"- {i.image}: {i.old} → {i.new}" + (f" ({i.digest})" if i.digest else "") + "\n")
        out.extend(f"  {f}\n" for f in i.files)
    if ctx["trailers"]:
        out.append(f"\n{ctx['trailers']}\n")
    return "".join(out)


def _default_body(ctx: Mapping[str, Any]) -> str:
    env, changes = ctx["environment"], ctx["changes"]
    out = ["Automated image update" + (f" for **{env}**" if env else "") + " by imagebot.\n\n",
           "| image | from | to | digest | files |\n|---|---|---|---|---|\n"]  # fmt: skip
    out.extend(f"| `{i.image}` | {i.old} | {i.new} | {i.digest or '—'} | {'<br>'.join(i.files)} |\n" for i in ctx["images"])
    if ctx["details"]:
        out.append(f"\n{ctx['details']}\n{ctx['rollback']}\n")
    out.append(f"\n<details><summary>{len(changes)} change{'' if len(changes) == 1 else 's'}</summary>\n\n")
    out.extend(f"- `{c.file}:{c.line}` {c.field} ({c.target}): `{c.old}` → `{c.new}`\n" for c in changes)
    out.append("\n</details>\n")
    return "".join(out)


_DEFAULTS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    DEFAULT_TITLE: _default_title,
    DEFAULT_COMMIT: _default_commit,
    DEFAULT_BODY: _default_body,
}


def _compile(text: str, python: bool = True) -> Callable[[Mapping[str, Any]], str]:
    """The renderer of template ``text``: a default's Python spelling, else the sandboxed Jinja2 template."""
    if python and text in _DEFAULTS:
        return _DEFAULTS[text]
    from jinja2 import TemplateError

    try:
        template = _env().from_string(text)
    except TemplateError as exc:
        raise ConfigError(f"message template error: {exc}") from None

    def run(ctx: Mapping[str, Any]) -> str:
        try:
            return template.render(ctx)
        except TemplateError as exc:
            raise ConfigError(f"message template error: {exc}") from None

    return run


def render(
    changes: tuple[Change, ...],
    requested: Mapping[str, ImageRef],
    templates: Templates = Templates(),
    environment: str = "",
    group: str = "",
    why: Mapping[str, Why] | None = None,
    limit: int = explain.BODY_LIMIT,
    python_defaults: bool = True,
) -> Rendered:
    """Title, commit message and body. With ``why`` (facts by subject) the default body explains each change
    in a section and the default commit message ends in trailers; templates see them as ``details``,
    ``trailers``, ``rollback`` and each image's ``why``/``compare_url``. A body over ``limit`` drops whole
    sections from the end, with a note saying how many."""
    changes = tuple(sorted(changes, key=lambda c: (c.file, c.doc, c.line, c.field)))  # the order a reader scans a diff in
    summaries = summarize(changes, requested, why)
    images = tuple(i for i, _ in summaries)
    explained = tuple(e for _, e in summaries if e is not None)
    sections = [explain.section(e) for e in explained]
    ctx = {"images": images, "changes": changes, "environment": environment, "group": group,
           "trailers": explain.trailers(explained), "rollback": explain.ROLLBACK_PR if explained else ""}  # fmt: skip
    title = _compile(templates.title, python_defaults)(ctx).strip()
    commit = _compile(templates.commit, python_defaults)({**ctx, "title": title, "details": "\n".join(sections)})
    body_template = _compile(templates.body, python_defaults)

    def body_with(kept: int) -> str:
        details = "\n".join(sections[:kept]) + (explain.omitted_note(len(sections) - kept) if kept < len(sections) else "")
        return body_template({**ctx, "title": title, "details": details})

    body = body_with(len(sections))
    if len(body) > limit and sections:
        # the most sections that fit, by bisection: a body grows with the sections it keeps, and rendering it once
        # per dropped section was quadratic (200 images: 67 renders, ~0.5 s of a cold run)
        lo, hi = 0, len(sections) - 1  # body_with(hi + 1) is known to be over the limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(body_with(mid)) <= limit:
                lo = mid
            else:
                hi = mid - 1
        body = body_with(lo)
    return Rendered(title, commit.rstrip() + "\n", explain.cut(body, limit))


def change_records(changes: tuple[Change, ...], requested: Mapping[str, ImageRef]) -> tuple[ChangeRecord, ...]:
    """The changes as Flux's messageTemplate sees them: file (relative to the update path), the object
    (apiVersion, kind, name, namespace of the document), old and new value, the setter as the marker names it."""
    from imagebot.gitops.gotemplate import ChangeRecord, ObjectId  # Flux's template engine: only its automations

    out = []
    for c in changes:
        o = c.object
        image = requested.get(c.subject)
        out.append(ChangeRecord(c.file, ObjectId(o.api_version, o.kind, o.name, o.namespace), c.old, c.new, c.setter,
                                str(image) if image is not None else ""))  # fmt: skip
    return tuple(out)
