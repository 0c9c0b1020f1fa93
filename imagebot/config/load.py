"""Load and validate configuration: the native format and Flux's image automation objects.

Every problem is collected with file, line and field (``config.yaml:12: images[0].environments.prod.policy:
unknown key 'semvar'``) and reported together; unknown keys are errors. Flux objects
(``image.toolkit.fluxcd.io`` ImageRepository / ImagePolicy / ImageUpdateAutomation, v1beta2
and v1, with ``source.toolkit.fluxcd.io`` GitRepository) map to the same model; a field we
cannot honour is reported, never silently ignored.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from gitopskit.notify import NotifyConfig, NotifyConfigError
from gitopskit.notify import parse_config as parse_notify
from imagebot import refs
from imagebot.config.model import Config, Environment, GitConfig, ImageConfig, RegistryConfig, Target
from imagebot.config.yamlload import MAX_BYTES, Map, YamlLoadError, line_of, load_all
from imagebot.errors import ConfigError, ImagebotError
from imagebot.gitops.message import Templates, template_problem
from imagebot.gitops.writer import Mode
from imagebot.policy import DEFAULT_EXCLUDES, PolicyKind, PolicySpec, build

NATIVE_API = "imagebot.dev/v1"
FLUX_IMAGE = "image.toolkit.fluxcd.io/"
FLUX_SOURCE = "source.toolkit.fluxcd.io/"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_MISSING = object()


def parse_duration(text: Any) -> float:
    """Go-style durations: 1h30m, 5m, 10s, 250ms; a bare number is seconds. Never negative, NaN or infinite."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"invalid duration {text!r}: must be a finite number of seconds, not negative")
        return float(text)
    m = _DURATION.match(text.strip()) if isinstance(text, str) and text.strip() else None
    if not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def positive_duration(text: Any) -> float:
    """A duration that paces a loop: zero would spin it."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


@dataclass
class Errors:
    items: list[str] = field(default_factory=list)

    def add(self, file: str, node: Any, key: Any, where: str, message: str) -> None:
        line = line_of(node, key)
        self.items.append(f"{file}:{line if line else '?'}: {where}: {message}")


def _type_names(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "dict": "a mapping"}
    return " or ".join(names.get(t.__name__, f"a {t.__name__}") for t in (kind if isinstance(kind, tuple) else (kind,)))


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, kinds)


class _Reader:
    """Typed access to one mapping, recording errors instead of raising.

    Every value is type-checked where it is read, so nothing downstream meets a list where it
    expects a string; ``allowed=None`` accepts any key (Kubernetes metadata).
    """

    def __init__(self, errors: Errors, file: str, node: Any, where: str, allowed: set[str] | None) -> None:
        self.e, self.file, self.node, self.where = errors, file, node, where
        if not isinstance(node, dict):
            errors.add(file, node, None, where, f"must be a mapping, not {_shown(node)}")
            self.node = Map()
            return
        if allowed is None:
            return
        for k in node:
            if k not in allowed:
                errors.add(file, node, k, f"{where}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def error(self, key: str | None, message: str) -> None:
        self.e.add(self.file, self.node, key, f"{self.where}.{key}" if key is not None else self.where, message)

    def has(self, key: str) -> bool:
        return key in self.node

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.node:
            if required:
                self.e.add(self.file, self.node, None, f"{self.where}.{key}", "required")
            return default
        v = self.node[key]
        if not _is(v, kind):
            self.error(key, f"must be {_type_names(kind)}, not {_shown(v)}")
            return default
        return v

    def text(self, key: str, default: Any = None, required: bool = False) -> Any:
        """A non-empty string."""
        v = self.get(key, str, _MISSING, required)
        if v is _MISSING:
            return default
        if not v.strip():
            self.error(key, "must not be empty")
            return default
        return v

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        items = self.get(key, list, None)
        if items is None:
            return default
        bad = [i for i, v in enumerate(items) if not isinstance(v, str)]
        for i in bad:
            self.e.add(self.file, items, i, f"{self.where}.{key}[{i}]", f"must be a string, not {_shown(items[i])}")
        return default if bad else tuple(items)

    def sub(self, key: str, allowed: set[str] | None, required: bool = False) -> _Reader:
        """The mapping under ``key`` (an empty one when absent)."""
        if key not in self.node:
            if required:
                self.e.add(self.file, self.node, None, f"{self.where}.{key}", "required")
            return _Reader(self.e, self.file, Map(), f"{self.where}.{key}", allowed)
        node = self.node[key]
        if not isinstance(node, dict):
            self.error(key, f"must be a mapping, not {_shown(node)}")
            node = Map()
        return _Reader(self.e, self.file, node, f"{self.where}.{key}", allowed)

    def check(self, key: str, fn: Callable[[Any], Any], default: Any = None, required: bool = False) -> Any:
        if key in self.node and isinstance(self.node[key], float):
            raw = self.node[key]  # NaN and infinities too: ``fn`` says why they are wrong
        else:
            raw = self.get(key, (str, int), _MISSING, required)
        if raw is _MISSING:
            return default
        try:
            return fn(raw)
        except (ValueError, ImagebotError) as exc:
            self.error(key, str(exc))
            return default

    def parsed(self, key: str, fn: Callable[[str], Any], required: bool = False) -> Any:
        """A string turned into a value by ``fn``; its error becomes this field's."""
        raw = self.text(key, required=required)
        if raw is None:
            return None
        try:
            return fn(raw)
        except (ValueError, ImagebotError) as exc:
            self.error(key, str(exc))
            return None

    def duration(self, key: str, default: float, *, positive: bool) -> float:
        return float(self.check(key, positive_duration if positive else parse_duration, default))

    def choice(self, key: str, enum: type[Enum], default: Any = None) -> Any:
        raw = self.get(key, str, _MISSING)
        if raw is _MISSING:
            return default
        try:
            return enum(raw)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum)
            self.error(key, f"{raw!r} is not one of the allowed values: {allowed}")
            return default

    def number(self, key: str, kind: type, default: Any = None, *, minimum: float = 0, above: bool = True) -> Any:
        """An int or finite number, greater than ``minimum`` (or at least it when ``above`` is false)."""
        v = self.get(key, (int,) if kind is int else (int, float), _MISSING)
        if v is _MISSING:
            return default
        if v < minimum or (above and v == minimum):
            self.error(key, f"must be {'greater than' if above else 'at least'} {minimum}, not {v}")
            return default
        return v

    def existing(self, key: str, *, directory: bool = False, check: bool = True) -> Path | None:
        """A path that must exist and be readable when the bot runs (checked unless ``check`` is false)."""
        raw = self.text(key)
        if raw is None:
            return None
        path = Path(raw)
        if check:
            what = "directory" if directory else "file"
            if not (path.is_dir() if directory else path.is_file()):
                self.error(key, f"{what} {raw} does not exist{' or is not a ' + what if path.exists() else ''}")
            elif not os.access(path, os.R_OK | (os.X_OK if directory else 0)):
                self.error(key, f"{what} {raw} is not readable")
        return path


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _writable_dir_problem(path: Path, what: str) -> str | None:
    """Why the bot could not create or write ``path`` (a directory), or None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{what} {path}: {probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{what} {path}: directory {probe} is not writable by this user (uid {os.getuid()})"
    return None


def _state_problem(state: Path) -> str | None:
    if state.exists():
        if not state.is_file():
            return f"state file {state} is not a file"
        if not os.access(state, os.R_OK | os.W_OK):
            return f"state file {state} is not writable by this user (uid {os.getuid()})"
    parent = state.parent
    if not parent.is_dir():
        return f"state file {state}: directory {parent} does not exist"
    return _writable_dir_problem(parent, "state file's directory")


def _policy(r: _Reader, node: Any, where: str, excludes: tuple[str, ...]) -> PolicySpec | None:
    p = _Reader(r.e, r.file, node, where, {"semver", "numerical", "alphabetical", "pattern", "extract", "exclude"})
    kinds = [k for k in ("semver", "numerical", "alphabetical") if k in p.node]
    if len(kinds) != 1:
        p.error(None, "give exactly one of semver, numerical, alphabetical")
        return None
    kind = PolicyKind(kinds[0])
    arg = p.text(kinds[0])
    pattern, extract, more = p.text("pattern"), p.get("extract", str, ""), p.strings("exclude")
    if arg is None:
        return None
    spec = PolicySpec(kind, arg, pattern, extract, excludes + more)
    try:
        build(spec)
    except ImagebotError as exc:
        p.error(kinds[0], str(exc))
        return None
    return spec


def _target(t: _Reader, git_names: set[str]) -> Target | None:
    git = t.text("git", required=True)
    if git is not None and git not in git_names:
        t.error("git", f"no git entry named {git!r} (have: {', '.join(sorted(git_names)) or 'none'})")
    mode = t.choice("mode", Mode, Mode.PUSH)
    push_branch = t.text("pushBranch")
    if mode is Mode.PUSH_BRANCH and not push_branch:
        t.error("pushBranch", "required with mode push-branch")
    path, group = t.get("path", str, ""), t.text("group", "default")
    labels, reviewers = t.strings("labels"), t.strings("reviewers")
    if git is None:
        return None
    return Target(git, path, mode, push_branch, group, labels, reviewers)


def _native(doc: Any, file: str, errors: Errors, environment: bool) -> Config | None:
    """``environment``: also check what the bot will touch on this machine (files, state directory)."""
    top = _Reader(
        errors,
        file,
        doc,
        "config",
        {
            "apiVersion",
            "kind",
            "registries",
            "git",
            "images",
            "interval",
            "debounce",
            "stateFile",
            "webhookSecretEnv",
            "cacheDir",
            "notifications",
        },
    )
    if top.get("kind", str, "Config", required=True) != "Config":
        top.error("kind", f"{top.node['kind']!r} is not one of the allowed values: Config")
    interval = top.duration("interval", 300.0, positive=True)
    debounce = top.duration("debounce", 2.0, positive=False)
    registries = []
    for i, node in enumerate(top.get("registries", list, [])):
        rr = _Reader(
            errors,
            file,
            node,
            f"registries[{i}]",
            {"host", "plainHTTP", "caFile", "credentials", "requestsPerSecond", "maxConcurrency"},
        )
        c = rr.sub("credentials", {"env", "file", "dockerConfig"})
        registries.append(
            RegistryConfig(
                rr.text("host", "", required=True),
                rr.get("plainHTTP", bool, False),
                rr.existing("caFile", check=environment),
                c.text("env"),
                c.existing("file", check=environment),
                c.existing("dockerConfig", directory=True, check=environment),
                rr.number("requestsPerSecond", float),
                rr.number("maxConcurrency", int, 8),
            )
        )
    gits = []
    for i, node in enumerate(top.get("git", list, [])):
        g = _Reader(
            errors, file, node, f"git[{i}]", {"name", "url", "branch", "auth", "author", "signingKeyFile", "github", "templates"}
        )
        auth = g.sub("auth", {"usernameEnv", "tokenEnv", "sshKeyFile", "knownHostsFile"})
        author = g.sub("author", {"name", "email"})
        gh = g.sub("github", {"api", "repo", "tokenEnv"})
        tp = g.sub("templates", {"title", "commit", "body"})
        defaults = Templates()
        gits.append(
            GitConfig(
                g.text("name", "", required=True),
                g.text("url", "", required=True),
                g.text("branch", "main"),
                auth.text("usernameEnv"),
                auth.text("tokenEnv"),
                auth.existing("sshKeyFile", check=environment),
                auth.existing("knownHostsFile", check=environment),
                author.text("name", "imagebot"),
                author.text("email", "imagebot@users.noreply.invalid"),
                g.existing("signingKeyFile", check=environment),
                gh.text("api", "https://api.github.com"),
                gh.text("repo"),
                gh.text("tokenEnv"),
                Templates(
                    _template(tp, "title", defaults.title),
                    _template(tp, "commit", defaults.commit),
                    _template(tp, "body", defaults.body),
                ),
            )
        )
    _unique(top, "git")
    git_names = {g.name for g in gits}
    images = []
    for i, node in enumerate(top.get("images", list, [], required=True)):
        im = _Reader(errors, file, node, f"images[{i}]", {"name", "repository", "interval", "exclude", "environments"})
        name = im.text("name", f"image{i}", required=True)
        repo = im.parsed("repository", refs.parse_name, required=True)
        excludes = DEFAULT_EXCLUDES + im.strings("exclude")
        image_interval = im.duration("interval", interval, positive=True)
        envs_node = im.sub("environments", None, required=True)
        envs = []
        for env_name in envs_node.node:
            where = f"images[{i}].environments.{env_name}"
            if not isinstance(env_name, str) or not env_name.strip():
                errors.add(file, envs_node.node, env_name, where, "an environment's name must be a non-empty string")
                continue
            en = envs_node.sub(env_name, {"policy", "target", "setter", "promote", "minAge", "allowDowngrade", "hold", "digest"})
            promote = en.sub("promote", {"from", "soak"}) if en.has("promote") else None
            policy = _policy(en, en.node["policy"], f"{where}.policy", excludes) if en.has("policy") else None
            if promote is None and not en.has("policy"):
                en.error(None, "needs a policy, or promote.from another environment")
            target = _target(
                en.sub("target", {"git", "path", "mode", "pushBranch", "group", "labels", "reviewers"}, required=True), git_names
            )
            env = Environment(
                env_name,
                policy,
                target or Target(""),
                en.text("setter"),
                promote.text("from", required=True) if promote else None,
                promote.duration("soak", 0.0, positive=False) if promote else 0.0,
                en.duration("minAge", 0.0, positive=False),
                en.get("allowDowngrade", bool, False),
                en.get("hold", bool, False),
                en.get("digest", bool, False),
            )
            if target is not None:
                envs.append(env)
        names = {e.name for e in envs}
        for e in envs:
            if e.promote_from and e.promote_from not in names:
                envs_node.error(e.name, f"promote.from: no environment {e.promote_from!r} in this image")
        if repo is not None:
            images.append(ImageConfig(name, repo, tuple(envs), image_interval))
    _unique(top, "images")
    state = Path(top.text("stateFile", "imagebot-state.db"))
    cache = top.text("cacheDir")
    secret_env = top.text("webhookSecretEnv")
    notifications = NotifyConfig()
    try:
        notifications = parse_notify(top.node.get("notifications"), "config.notifications")
    except NotifyConfigError as exc:
        where, _, why = str(exc).partition(": ")
        errors.add(file, top.node, "notifications", where, why)
    if environment:
        problem = _state_problem(state)
        if problem:
            top.error("stateFile", problem)
        problem = _writable_dir_problem(Path(cache), "cache directory") if cache else None
        if problem:
            top.error("cacheDir", problem)
    if errors.items:
        return None
    return Config(
        tuple(images),
        tuple(gits),
        tuple(registries),
        interval,
        debounce,
        state,
        secret_env,
        Path(cache) if cache else None,
        file,
        notifications,
    )


def _template(r: _Reader, key: str, default: str) -> str:
    text = r.get(key, str, default)
    problem = template_problem(text) if text is not default else None
    if problem:
        r.error(key, problem)
    return str(text)


def _unique(top: _Reader, key: str) -> None:
    """Names identify state rows and git workspaces: two entries with one name would share them."""
    seen: set[str] = set()
    items = top.node.get(key)
    for i, item in enumerate(items if isinstance(items, list) else []):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            top.e.add(top.file, items, i, f"{key}[{i}].name", f"{name!r} is used twice: names must be unique")
        seen.add(name) if isinstance(name, str) else None


_FLUX_META = "metadata"
_DIGEST_POLICIES = ("Never", "IfNotPresent", "Always")


def _object(errors: Errors, file: str, d: Any) -> tuple[str, str, str]:
    """Namespace, name and a label (``Kind ns/name``) of one Flux object."""
    kind = d.get("kind") if isinstance(d.get("kind"), str) else "object"
    meta = _Reader(errors, file, d, str(kind), None).sub(_FLUX_META, None)
    ns, name = meta.text("namespace", "flux-system"), meta.text("name", "", required=True)
    return ns, name, f"{kind} {ns}/{name}"


def _spec(errors: Errors, file: str, d: Any, where: str, allowed: set[str] | None) -> _Reader:
    return _Reader(errors, file, d, where, None).sub("spec", allowed)


def _flux(docs: list[tuple[str, Any]], errors: Errors) -> Config | None:
    """Map Flux image automation objects onto the model. Every field is read through a typed reader."""
    repos: dict[tuple[str, str], tuple[str, Any]] = {}
    policies: list[tuple[str, Any]] = []
    automations: list[tuple[str, Any]] = []
    gitrepos: dict[tuple[str, str], tuple[str, Any]] = {}
    for file, d in docs:
        ns, name, where = _object(errors, file, d)
        _spec(errors, file, d, where, None)
        kind = d.get("kind")
        if kind == "ImageRepository":
            repos[(ns, name)] = (file, d)
        elif kind == "ImagePolicy":
            policies.append((file, d))
        elif kind == "ImageUpdateAutomation":
            automations.append((file, d))
        elif kind == "GitRepository":
            gitrepos[(ns, name)] = (file, d)
        else:
            errors.add(
                file, d, "kind", f"{kind}", "not one of ImageRepository, ImagePolicy, ImageUpdateAutomation, GitRepository"
            )
    if errors.items:
        return None
    gits: list[GitConfig] = []
    targets: dict[str, Target] = {}  # namespace → target
    for file, d in automations:
        ns, name, where = _object(errors, file, d)
        s = _spec(errors, file, d, where, {"interval", "sourceRef", "git", "update", "suspend", "policySelector"})
        s.duration("interval", 0.0, positive=True)
        src = s.sub("sourceRef", {"kind", "name", "namespace", "apiVersion"}, required=True)
        src_ns, src_name = src.text("namespace", ns), src.text("name", "", required=True)
        gr = gitrepos.get((src_ns, src_name))
        if gr is None:
            s.error("sourceRef", f"GitRepository {src_ns}/{src_name} is not among the loaded files")
            continue
        gfile, gdoc = gr
        gspec = _spec(errors, gfile, gdoc, f"GitRepository {src_ns}/{src_name}", None)
        if gspec.has("secretRef"):
            gspec.error("secretRef", "cannot be read from files: give the token or key in a native git entry (auth)")
        url = gspec.text("url", "", required=True)
        gg = s.sub("git", {"checkout", "commit", "push"})
        checkout = gg.sub("checkout", {"ref"}).sub("ref", None)
        branch = checkout.text("branch") or gspec.sub("ref", None).text("branch") or "main"
        commit = gg.sub("commit", {"author", "messageTemplate", "signingKey", "messageTemplateValues"})
        if commit.has("messageTemplate"):
            commit.error("messageTemplate", "Go templates are not supported: give a Jinja2 template under git[].templates")
        if commit.has("signingKey"):
            commit.error("signingKey", "a Secret cannot be read from files: give git[].signingKeyFile")
        author = commit.sub("author", {"name", "email"})
        push = gg.sub("push", {"branch", "refspec", "options"})
        for extra in ("refspec", "options"):
            if push.has(extra):
                push.error(extra, "not supported")
        update = s.sub("update", {"path", "strategy"})
        update.choice("strategy", _Strategy, _Strategy.SETTERS)
        if s.has("policySelector"):
            s.error("policySelector", "not supported: every ImagePolicy in the namespace is used")
        git_name = f"{ns}/{name}"
        gits.append(
            GitConfig(
                git_name,
                url,
                branch,
                author_name=author.text("name", "imagebot"),
                author_email=author.text("email", "imagebot@users.noreply.invalid"),
            )
        )
        raw_path = update.get("path", str, "./")
        path = raw_path.lstrip("./") if raw_path not in ("./", ".") else ""
        push_branch = push.text("branch")
        other = push_branch if push_branch not in (None, branch) else None
        targets[ns] = Target(git_name, path, Mode.PUSH_BRANCH if other else Mode.PUSH, other)
    images: dict[tuple[str, str], ImageConfig] = {}
    for file, d in policies:
        ns, name, where = _object(errors, file, d)
        s = _spec(errors, file, d, where, {"imageRepositoryRef", "policy", "filterTags", "digestReflectionPolicy", "interval"})
        ref = s.sub("imageRepositoryRef", {"name", "namespace"}, required=True)
        rkey = (ref.text("namespace", ns), ref.text("name", "", required=True))
        if rkey not in repos:
            s.error("imageRepositoryRef", f"ImageRepository {rkey[0]}/{rkey[1]} is not among the loaded files")
            continue
        rfile, rdoc = repos[rkey]
        rs = _spec(
            errors,
            rfile,
            rdoc,
            f"ImageRepository {rkey[0]}/{rkey[1]}",
            {
                "image",
                "interval",
                "exclusionList",
                "secretRef",
                "timeout",
                "suspend",
                "provider",
                "insecure",
                "certSecretRef",
                "serviceAccountName",
                "accessFrom",
            },
        )
        for unsupported in ("secretRef", "certSecretRef", "serviceAccountName", "provider"):
            if rs.has(unsupported) and not (unsupported == "provider" and rs.node.get("provider") == "generic"):
                errors.add(
                    rfile,
                    rs.node,
                    unsupported,
                    f"ImageRepository.spec.{unsupported}",
                    "cannot be honoured from files: configure it under registries:",
                )
        excludes = rs.strings("exclusionList", DEFAULT_EXCLUDES[:1])  # Flux's default: ^.*\.sig$
        choice = s.sub("policy", {"semver", "numerical", "alphabetical"}, required=True)
        native = Map(choice.node.line if isinstance(choice.node, Map) else 0)
        for kind, key, default in (("semver", "range", None), ("numerical", "order", "asc"), ("alphabetical", "order", "asc")):
            if choice.has(kind):
                value = choice.sub(kind, {key}).get(key, str, default, required=default is None)
                if value is not None:
                    native[kind] = value
                    native.key_lines[kind] = line_of(choice.node, kind) or 0
        if not native:
            choice.error(None, "give exactly one of semver, numerical, alphabetical")
        ft = s.sub("filterTags", {"pattern", "extract"})
        for key in ("pattern", "extract"):
            if ft.text(key):
                native[key] = ft.node[key]
        pspec = _policy(s, native, f"{where}.spec.policy", ()) if native else None
        if pspec is not None:
            pspec = PolicySpec(pspec.kind, pspec.argument, pspec.pattern, pspec.extract, excludes)
        digest = s.choice("digestReflectionPolicy", _DigestPolicy, _DigestPolicy.NEVER) is not _DigestPolicy.NEVER
        interval = rs.duration("interval", 300.0, positive=True)
        repo = rs.parsed("image", refs.parse_name, required=True)
        target = targets.get(ns)
        if target is None:
            errors.add(file, d, None, where, f"no ImageUpdateAutomation in namespace {ns} among the loaded files")
            continue
        if repo is None:
            continue
        env = Environment(name, pspec, target, setter=f"{ns}:{name}", digest=digest)
        cur = images.get(rkey)
        envs = (*(cur.environments if cur else ()), env)
        images[rkey] = ImageConfig(f"{rkey[0]}/{rkey[1]}", repo, envs, interval)
    if errors.items:
        return None
    return Config(tuple(images.values()), tuple(gits))


class _Strategy(StrEnum):
    SETTERS = "Setters"


class _DigestPolicy(StrEnum):
    NEVER = "Never"
    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"


def _line_key(item: str) -> tuple[str, int]:
    m = re.match(r"^(.*?):(\d+|\?):", item)
    return (m.group(1), int(m.group(2)) if m and m.group(2).isdigit() else 0) if m else (item, 0)


def _read(path: Path) -> str:
    """The file's text, refusing one over the size limit before reading it whole."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than the limit of {MAX_BYTES:,} bytes: refused (see README, Limits)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None


def load(paths: list[Path], *, environment: bool = True) -> Config:
    """Load one native config file, or any number of files holding Flux objects.

    ``environment``: also check what running needs on this machine — files named by the config
    exist and are readable, the state file's directory is writable (``config validate
    --no-environment`` skips this, for CI outside the cluster).
    """
    errors = Errors()
    docs: list[tuple[str, Any]] = []
    for p in paths:
        text = _read(p)
        try:
            docs += [(str(p), d) for d in load_all(text) if d is not None]
        except YamlLoadError as exc:
            errors.items.append(f"{p}:{exc.line or '?'}: not valid YAML: {exc}")
    if errors.items:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors.items))
    native, flux = [], []
    for f, d in docs:
        api = d.get("apiVersion") if isinstance(d, dict) else None
        if api == NATIVE_API:
            native.append((f, d))
        elif isinstance(api, str) and api.startswith((FLUX_IMAGE, FLUX_SOURCE)):
            flux.append((f, d))
        else:
            kind = d.get("kind") if isinstance(d, dict) else _shown(d)
            errors.add(f, d, None, str(kind), f"not an imagebot Config ({NATIVE_API}) nor a Flux image automation object")
    if len(native) > 1 or (native and flux):
        errors.add(
            *(native + flux)[1][:2], None, "config", "only one native Config document is allowed, and no Flux objects beside it"
        )
    cfg = None
    if not errors.items:
        cfg = _native(native[0][1], native[0][0], errors, environment) if native else _flux(flux, errors)
        if cfg is not None and not native and environment and (problem := _state_problem(cfg.state_file)):
            errors.items.append(f"{cfg.state_file}: {problem}")
    if errors.items or cfg is None:
        ordered = sorted(errors.items, key=_line_key)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(ordered or ["no configuration found"]))
    return cfg
