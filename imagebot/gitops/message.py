"""Commit message, PR title and PR body rendered from a change set (pure, deterministic).

Templates are Jinja2 in a sandbox (no attribute tricks, no I/O) with strict undefined names;
their context holds only the change set and the names given — no clock, no environment, so the
same update always renders the same text and a re-run finds nothing new to say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from imagebot.errors import ConfigError
from imagebot.gitops.gotemplate import ChangeRecord, ObjectId
from imagebot.refs import ImageRef, try_parse
from imagebot.update.model import Change, Target

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
)
DEFAULT_BODY = (
    "Automated image update{% if environment %} for **{{ environment }}**{% endif %} by imagebot.\n\n"
    "| image | from | to | digest | files |\n|---|---|---|---|---|\n"
    "{% for i in images %}| `{{ i.image }}` | {{ i.old }} | {{ i.new }} | {{ i.digest or '—' }} | "
    "{{ i.files|join('<br>') }} |\n{% endfor %}"
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


def summarize(changes: tuple[Change, ...], requested: Mapping[str, ImageRef]) -> tuple[ImageSummary, ...]:
    """One line per requested image that changed, in a stable order."""
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
        out.append(
            ImageSummary(
                image, image.rsplit("/", 1)[-1], ", ".join(olds) or "(unset)", new, digest, tuple(sorted({c.file for c in group}))
            )
        )
    return tuple(out)


_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a usable template (a syntax error), or None: checked when the config loads."""
    try:
        _ENV.from_string(text)
    except TemplateError as exc:
        return f"template error: {exc}"
    return None


def render(
    changes: tuple[Change, ...],
    requested: Mapping[str, ImageRef],
    templates: Templates = Templates(),
    environment: str = "",
    group: str = "",
) -> Rendered:
    images = summarize(changes, requested)
    ctx = {"images": images, "changes": changes, "environment": environment, "group": group}
    try:
        title = _ENV.from_string(templates.title).render(ctx).strip()
        commit = _ENV.from_string(templates.commit).render({**ctx, "title": title}).rstrip() + "\n"
        body = _ENV.from_string(templates.body).render({**ctx, "title": title})
    except TemplateError as exc:
        raise ConfigError(f"message template error: {exc}") from None
    return Rendered(title, commit, body)


def change_records(changes: tuple[Change, ...], requested: Mapping[str, ImageRef]) -> tuple[ChangeRecord, ...]:
    """The changes as Flux's messageTemplate sees them: file (relative to the update path), the object
    (apiVersion, kind, name, namespace of the document), old and new value, the setter as the marker names it."""
    out = []
    for c in changes:
        o = c.object
        image = requested.get(c.subject)
        out.append(ChangeRecord(c.file, ObjectId(o.api_version, o.kind, o.name, o.namespace), c.old, c.new, c.setter,
                                str(image) if image is not None else ""))  # fmt: skip
    return tuple(out)
