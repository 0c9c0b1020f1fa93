"""Load and validate configuration: the native format and Flux's image automation objects.

Every problem is collected with file, line and field (``config.yaml:12: images[0].environments.prod.policy:
unknown key 'semvar'``) and reported together; unknown keys are errors. Flux objects
(``image.toolkit.fluxcd.io`` ImageRepository / ImagePolicy / ImageUpdateAutomation, v1beta2
and v1, with ``source.toolkit.fluxcd.io`` GitRepository) map to the same model; a field we
cannot honour is reported, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from imagebot import refs
from imagebot.config.model import Config, Environment, GitConfig, ImageConfig, RegistryConfig, Target
from imagebot.errors import ConfigError, ImagebotError
from imagebot.gitops.message import Templates
from imagebot.gitops.writer import Mode
from imagebot.policy import DEFAULT_EXCLUDES, PolicyKind, PolicySpec, build

NATIVE_API = "imagebot.dev/v1"
FLUX_IMAGE = "image.toolkit.fluxcd.io/"
FLUX_SOURCE = "source.toolkit.fluxcd.io/"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def parse_duration(text: Any) -> float:
    """Go-style durations: 1h30m, 5m, 10s, 250ms; a bare number is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _DURATION.match(str(text).strip()) if text not in (None, "") else None
    if not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


@dataclass
class Errors:
    items: list[str] = field(default_factory=list)

    def add(self, file: str, node: Any, key: Any, where: str, message: str) -> None:
        line = _line(node, key)
        self.items.append(f"{file}:{line if line else '?'}: {where}: {message}")


def _line(node: Any, key: Any) -> int | None:
    try:
        if isinstance(node, CommentedMap) and key is not None and key in node:
            return int(node.lc.key(key)[0]) + 1
        if isinstance(node, CommentedSeq) and isinstance(key, int):
            return int(node.lc.item(key)[0]) + 1
        if hasattr(node, "lc"):
            return int(node.lc.line) + 1
    except (KeyError, AttributeError, TypeError, IndexError):
        return None
    return None


class _Reader:
    """Typed access to one mapping, recording errors instead of raising."""

    def __init__(self, errors: Errors, file: str, node: Any, where: str, allowed: set[str]) -> None:
        self.e, self.file, self.node, self.where = errors, file, node, where
        if not isinstance(node, dict):
            errors.add(file, node, None, where, "must be a mapping")
            self.node = {}
            return
        for k in node:
            if k not in allowed:
                errors.add(file, node, k, f"{where}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.node:
            if required:
                self.e.add(self.file, self.node, None, f"{self.where}.{key}", "required")
            return default
        v = self.node[key]
        if not isinstance(v, kind) or (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
            names = "/".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            self.e.add(self.file, self.node, key, f"{self.where}.{key}", f"must be {names}, not {type(v).__name__}")
            return default
        return v

    def check(self, key: str, fn: Callable[[Any], Any], default: Any = None, required: bool = False) -> Any:
        raw = self.get(key, (str, int, float, bool, dict, list), None, required)
        if raw is None:
            return default
        try:
            return fn(raw)
        except (ValueError, ImagebotError) as exc:
            self.e.add(self.file, self.node, key, f"{self.where}.{key}", str(exc))
            return default


def _policy(r: _Reader, node: Any, where: str, excludes: tuple[str, ...]) -> PolicySpec | None:
    p = _Reader(r.e, r.file, node, where, {"semver", "numerical", "alphabetical", "pattern", "extract", "exclude"})
    kinds = [k for k in ("semver", "numerical", "alphabetical") if k in p.node]
    if len(kinds) != 1:
        r.e.add(r.file, node, None, where, "give exactly one of semver, numerical, alphabetical")
        return None
    kind = PolicyKind(kinds[0])
    arg = p.get(kinds[0], str, "")
    spec = PolicySpec(kind, arg, p.get("pattern", str), p.get("extract", str, ""), excludes + tuple(p.get("exclude", list, [])))
    try:
        build(spec)
    except ImagebotError as exc:
        r.e.add(r.file, node, kinds[0], f"{where}.{kinds[0]}", str(exc))
        return None
    return spec


def _target(r: _Reader, node: Any, where: str, git_names: set[str]) -> Target | None:
    t = _Reader(r.e, r.file, node, where, {"git", "path", "mode", "pushBranch", "group", "labels", "reviewers"})
    git = t.get("git", str, required=True)
    if git is not None and git not in git_names:
        r.e.add(r.file, t.node, "git", f"{where}.git", f"no git entry named {git!r} (have: {', '.join(sorted(git_names))})")
    mode = t.check("mode", lambda v: Mode(str(v)), Mode.PUSH)
    push_branch = t.get("pushBranch", str)
    if mode is Mode.PUSH_BRANCH and not push_branch:
        r.e.add(r.file, t.node, "mode", f"{where}.pushBranch", "required with mode push-branch")
    if git is None:
        return None
    return Target(
        git,
        t.get("path", str, ""),
        mode,
        push_branch,
        t.get("group", str, "default"),
        tuple(t.get("labels", list, [])),
        tuple(t.get("reviewers", list, [])),
    )


def _native(doc: Any, file: str, errors: Errors) -> Config | None:
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
        },
    )
    interval = top_interval(top)
    debounce = top.check("debounce", parse_duration, 2.0)
    registries = []
    for i, node in enumerate(top.get("registries", list, [])):
        rr = _Reader(
            errors,
            file,
            node,
            f"registries[{i}]",
            {"host", "plainHTTP", "caFile", "credentials", "requestsPerSecond", "maxConcurrency"},
        )
        creds = rr.get("credentials", dict, {})
        c = _Reader(errors, file, creds, f"registries[{i}].credentials", {"env", "file", "dockerConfig"})
        registries.append(
            RegistryConfig(
                rr.get("host", str, "", required=True),
                rr.get("plainHTTP", bool, False),
                Path(rr.get("caFile", str)) if rr.get("caFile", str) else None,
                c.get("env", str),
                Path(c.get("file", str)) if c.get("file", str) else None,
                Path(c.get("dockerConfig", str)) if c.get("dockerConfig", str) else None,
                rr.get("requestsPerSecond", (int, float)),
                rr.get("maxConcurrency", int, 8),
            )
        )
    gits = []
    for i, node in enumerate(top.get("git", list, [])):
        g = _Reader(
            errors, file, node, f"git[{i}]", {"name", "url", "branch", "auth", "author", "signingKeyFile", "github", "templates"}
        )
        auth = _Reader(
            errors, file, g.get("auth", dict, {}), f"git[{i}].auth", {"usernameEnv", "tokenEnv", "sshKeyFile", "knownHostsFile"}
        )
        author = _Reader(errors, file, g.get("author", dict, {}), f"git[{i}].author", {"name", "email"})
        gh = _Reader(errors, file, g.get("github", dict, {}), f"git[{i}].github", {"api", "repo", "tokenEnv"})
        tp = _Reader(errors, file, g.get("templates", dict, {}), f"git[{i}].templates", {"title", "commit", "body"})
        defaults = Templates()
        ssh_key, known = auth.get("sshKeyFile", str), auth.get("knownHostsFile", str)
        signing = g.get("signingKeyFile", str)
        gits.append(
            GitConfig(
                g.get("name", str, "", required=True),
                g.get("url", str, "", required=True),
                g.get("branch", str, "main"),
                auth.get("usernameEnv", str),
                auth.get("tokenEnv", str),
                Path(ssh_key) if ssh_key else None,
                Path(known) if known else None,
                author.get("name", str, "imagebot"),
                author.get("email", str, "imagebot@users.noreply.invalid"),
                Path(signing) if signing else None,
                gh.get("api", str, "https://api.github.com"),
                gh.get("repo", str),
                gh.get("tokenEnv", str),
                Templates(
                    tp.get("title", str, defaults.title),
                    tp.get("commit", str, defaults.commit),
                    tp.get("body", str, defaults.body),
                ),
            )
        )
    git_names = {g.name for g in gits}
    images = []
    for i, node in enumerate(top.get("images", list, [], required=True)):
        im = _Reader(errors, file, node, f"images[{i}]", {"name", "repository", "interval", "exclude", "environments"})
        name = im.get("name", str, f"image{i}", required=True)
        repo = im.check("repository", lambda v: refs.parse_name(str(v)), required=True)
        excludes = DEFAULT_EXCLUDES + tuple(im.get("exclude", list, []))
        envs_node = im.get("environments", dict, {}, required=True)
        envs = []
        for env_name in envs_node:
            where = f"images[{i}].environments.{env_name}"
            en = _Reader(
                errors,
                file,
                envs_node[env_name],
                where,
                {"policy", "target", "setter", "promote", "minAge", "allowDowngrade", "hold", "digest"},
            )
            promote = en.get("promote", dict)
            pr = _Reader(errors, file, promote or {}, f"{where}.promote", {"from", "soak"})
            policy = _policy(en, en.node.get("policy"), f"{where}.policy", excludes) if "policy" in en.node else None
            if policy is None and promote is None and "policy" not in en.node:
                errors.add(file, en.node, None, where, "needs a policy, or promote.from another environment")
            target = _target(en, en.node.get("target"), f"{where}.target", git_names) if "target" in en.node else None
            if target is None and "target" not in en.node:
                errors.add(file, en.node, None, f"{where}.target", "required")
            if target is None:
                continue
            envs.append(
                Environment(
                    str(env_name),
                    policy,
                    target,
                    en.get("setter", str),
                    pr.get("from", str) if promote else None,
                    pr.check("soak", parse_duration, 0.0) if promote else 0.0,
                    en.check("minAge", parse_duration, 0.0),
                    en.get("allowDowngrade", bool, False),
                    en.get("hold", bool, False),
                    en.get("digest", bool, False),
                )
            )
        names = {e.name for e in envs}
        for e in envs:
            if e.promote_from and e.promote_from not in names:
                errors.add(
                    file,
                    envs_node,
                    e.name,
                    f"images[{i}].environments.{e.name}.promote.from",
                    f"no environment {e.promote_from!r} in this image",
                )
        if repo is not None:
            images.append(ImageConfig(name, repo, tuple(envs), im.check("interval", parse_duration, interval)))
    if errors.items:
        return None
    state = top.get("stateFile", str, "imagebot-state.db")
    cache = top.get("cacheDir", str)
    return Config(
        tuple(images),
        tuple(gits),
        tuple(registries),
        interval,
        debounce,
        Path(state),
        top.get("webhookSecretEnv", str),
        Path(cache) if cache else None,
        file,
    )


def top_interval(top: _Reader) -> float:
    return float(top.check("interval", parse_duration, 300.0))


def _flux(docs: list[tuple[str, Any]], errors: Errors) -> Config | None:
    """Map Flux image automation objects onto the model."""
    repos: dict[tuple[str, str], tuple[str, Any]] = {}
    policies: list[tuple[str, Any]] = []
    automations: list[tuple[str, Any]] = []
    gitrepos: dict[tuple[str, str], tuple[str, Any]] = {}
    for file, d in docs:
        kind, meta = d.get("kind"), d.get("metadata") or {}
        key = (meta.get("namespace") or "flux-system", meta.get("name", ""))
        if kind == "ImageRepository":
            repos[key] = (file, d)
        elif kind == "ImagePolicy":
            policies.append((file, d))
        elif kind == "ImageUpdateAutomation":
            automations.append((file, d))
        elif kind == "GitRepository":
            gitrepos[key] = (file, d)
    gits: list[GitConfig] = []
    targets: dict[str, Target] = {}  # namespace → target
    for file, d in automations:
        meta, spec = d.get("metadata") or {}, d.get("spec") or {}
        ns = meta.get("namespace") or "flux-system"
        where = f"ImageUpdateAutomation {ns}/{meta.get('name')}"
        s = _Reader(errors, file, spec, f"{where}.spec", {"interval", "sourceRef", "git", "update", "suspend", "policySelector"})
        src = s.get("sourceRef", dict, {}, required=True)
        src_ns = src.get("namespace") or ns
        gr = gitrepos.get((src_ns, src.get("name", "")))
        if gr is None:
            errors.add(
                file,
                spec,
                "sourceRef",
                f"{where}.spec.sourceRef",
                f"GitRepository {src_ns}/{src.get('name')} is not among the loaded files",
            )
            continue
        gspec = gr[1].get("spec") or {}
        if gspec.get("secretRef"):
            errors.add(
                gr[0],
                gspec,
                "secretRef",
                "GitRepository.spec.secretRef",
                "cannot be read from files: give the token or key in a native git entry (auth)",
            )
        git = s.get("git", dict, {})
        gg = _Reader(errors, file, git, f"{where}.spec.git", {"checkout", "commit", "push"})
        checkout = (gg.get("checkout", dict, {}) or {}).get("ref") or {}
        branch = checkout.get("branch") or (gspec.get("ref") or {}).get("branch") or "main"
        commit = _Reader(
            errors,
            file,
            gg.get("commit", dict, {}),
            f"{where}.spec.git.commit",
            {"author", "messageTemplate", "signingKey", "messageTemplateValues"},
        )
        if commit.get("messageTemplate", str):
            errors.add(
                file,
                commit.node,
                "messageTemplate",
                f"{where}.spec.git.commit.messageTemplate",
                "Go templates are not supported: give a Jinja2 template under git[].templates",
            )
        if commit.get("signingKey", dict):
            errors.add(
                file,
                commit.node,
                "signingKey",
                f"{where}.spec.git.commit.signingKey",
                "a Secret cannot be read from files: give git[].signingKeyFile",
            )
        author = commit.get("author", dict, {}) or {}
        push = gg.get("push", dict, {}) or {}
        for extra in ("refspec", "options"):
            if extra in push:
                errors.add(file, push, extra, f"{where}.spec.git.push.{extra}", "not supported")
        update = _Reader(errors, file, s.get("update", dict, {}), f"{where}.spec.update", {"path", "strategy"})
        if update.get("strategy", str, "Setters") != "Setters":
            errors.add(file, update.node, "strategy", f"{where}.spec.update.strategy", "only Setters is supported")
        if s.get("policySelector", dict):
            errors.add(
                file,
                spec,
                "policySelector",
                f"{where}.spec.policySelector",
                "not supported: every ImagePolicy in the namespace is used",
            )
        name = f"{ns}/{meta.get('name')}"
        gits.append(
            GitConfig(
                name,
                gspec.get("url", ""),
                branch,
                author_name=author.get("name", "imagebot"),
                author_email=author.get("email", "imagebot@users.noreply.invalid"),
            )
        )
        path = str(update.get("path", str, "./")).lstrip("./") if update.get("path", str) not in (None, "./", ".") else ""
        other = push.get("branch") if push.get("branch") not in (None, "", branch) else None
        targets[ns] = Target(name, path, Mode.PUSH_BRANCH if other else Mode.PUSH, other)
    images: dict[tuple[str, str], ImageConfig] = {}
    for file, d in policies:
        meta, spec = d.get("metadata") or {}, d.get("spec") or {}
        ns = meta.get("namespace") or "flux-system"
        where = f"ImagePolicy {ns}/{meta.get('name')}"
        s = _Reader(
            errors,
            file,
            spec,
            f"{where}.spec",
            {"imageRepositoryRef", "policy", "filterTags", "digestReflectionPolicy", "interval"},
        )
        ref = s.get("imageRepositoryRef", dict, {}, required=True)
        rkey = (ref.get("namespace") or ns, ref.get("name", ""))
        if rkey not in repos:
            errors.add(
                file,
                spec,
                "imageRepositoryRef",
                f"{where}.spec.imageRepositoryRef",
                f"ImageRepository {rkey[0]}/{rkey[1]} is not among the loaded files",
            )
            continue
        rfile, rdoc = repos[rkey]
        rspec = rdoc.get("spec") or {}
        rs = _Reader(
            errors,
            rfile,
            rspec,
            f"ImageRepository {rkey[0]}/{rkey[1]}.spec",
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
            if rs.get(unsupported, (dict, str)) and not (unsupported == "provider" and rspec.get("provider") == "generic"):
                errors.add(
                    rfile,
                    rspec,
                    unsupported,
                    f"ImageRepository.spec.{unsupported}",
                    "cannot be honoured from files: configure it under registries:",
                )
        excludes = tuple(rs.get("exclusionList", list, list(DEFAULT_EXCLUDES[:1])))  # Flux's default: ^.*\.sig$
        flux_policy = s.get("policy", dict, {}, required=True) or {}
        choice = {k: v for k, v in flux_policy.items()}
        native: dict[str, Any] = {}
        if "semver" in choice:
            native["semver"] = (choice["semver"] or {}).get("range", "")
        elif "numerical" in choice:
            native["numerical"] = (choice["numerical"] or {}).get("order", "asc")
        elif "alphabetical" in choice:
            native["alphabetical"] = (choice["alphabetical"] or {}).get("order", "asc")
        ft = spec.get("filterTags") or {}
        if ft.get("pattern"):
            native["pattern"] = ft["pattern"]
        if ft.get("extract"):
            native["extract"] = ft["extract"]
        pspec = _policy(s, CommentedMap(native), f"{where}.spec.policy", ())
        if pspec is not None:
            pspec = PolicySpec(pspec.kind, pspec.argument, pspec.pattern, pspec.extract, excludes)
        target = targets.get(ns)
        if target is None:
            errors.add(file, meta, None, where, f"no ImageUpdateAutomation in namespace {ns} among the loaded files")
            continue
        try:
            repo = refs.parse_name(rspec.get("image", ""))
        except ImagebotError as exc:
            errors.add(rfile, rspec, "image", "ImageRepository.spec.image", str(exc))
            continue
        digest = spec.get("digestReflectionPolicy", "Never") in ("IfNotPresent", "Always")
        env = Environment(meta.get("name", ""), pspec, target, setter=f"{ns}:{meta.get('name')}", digest=digest)
        interval = parse_duration(rspec.get("interval", "5m"))
        cur = images.get(rkey)
        envs = (*(cur.environments if cur else ()), env)
        images[rkey] = ImageConfig(f"{rkey[0]}/{rkey[1]}", repo, envs, interval)
    if errors.items:
        return None
    return Config(tuple(images.values()), tuple(gits))


def _line_key(item: str) -> tuple[str, int]:
    m = re.match(r"^(.*?):(\d+|\?):", item)
    return (m.group(1), int(m.group(2)) if m and m.group(2).isdigit() else 0) if m else (item, 0)


def load(paths: list[Path]) -> Config:
    """Load one native config file, or any number of files holding Flux objects."""
    errors = Errors()
    docs: list[tuple[str, Any]] = []
    yaml = YAML(typ="rt")
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
        try:
            for d in yaml.load_all(text):
                if d is not None:
                    docs.append((str(p), d))
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            errors.items.append(f"{p}:{mark.line + 1 if mark else '?'}: not valid YAML: {str(exc).splitlines()[0]}")
    if errors.items:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors.items))
    native = [(f, d) for f, d in docs if isinstance(d, dict) and d.get("apiVersion") == NATIVE_API]
    flux = [(f, d) for f, d in docs if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith((FLUX_IMAGE, FLUX_SOURCE))]
    for f, d in docs:
        if (f, d) not in native and (f, d) not in flux:
            kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
            errors.add(f, d, None, str(kind), f"not an imagebot Config ({NATIVE_API}) nor a Flux image automation object")
    if len(native) > 1:
        errors.add(native[1][0], native[1][1], None, "config", "only one native Config document is allowed")
    cfg = None
    if not errors.items:
        cfg = _native(native[0][1], native[0][0], errors) if native else _flux(flux, errors)
    if errors.items or cfg is None:
        ordered = sorted(errors.items, key=_line_key)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(ordered or ["no configuration found"]))
    return cfg
