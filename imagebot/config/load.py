"""Load and validate configuration: the native format and Flux's image automation objects.

Every problem is collected with file, line and field (``config.yaml:12: images[0].environments.prod.policy:
unknown key 'semvar'``) and reported together; unknown keys are errors. Flux objects
(``image.toolkit.fluxcd.io`` ImageRepository / ImagePolicy / ImageUpdateAutomation, v1beta2
and v1, with ``source.toolkit.fluxcd.io`` GitRepository) map to the same model; a field we
cannot honour is reported, never silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gitopskit.notify import NotifyConfig, NotifyConfigError
from gitopskit.notify import parse_config as parse_notify
from imagebot import refs
from imagebot.config.fields import Errors, parse_duration, positive_duration
from imagebot.config.fields import Reader as _Reader
from imagebot.config.fields import policy_spec as _policy
from imagebot.config.fields import shown as _shown
from imagebot.config.model import (
    Config,
    DiscoverConfig,
    DiscoverLevel,
    Environment,
    GitConfig,
    ImageConfig,
    Purpose,
    Reference,
    RegistryConfig,
    Target,
    VerifySpec,
)
from imagebot.config.yamlload import MAX_BYTES, YamlLoadError, load_all
from imagebot.errors import ConfigError
from imagebot.gitops.message import Templates, template_problem
from imagebot.gitops.writer import Mode
from imagebot.policy import DEFAULT_EXCLUDES

__all__ = ["Errors", "load", "parse_duration", "positive_duration"]

NATIVE_API = "imagebot.dev/v1"

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



def _verify(r: _Reader, environment: bool, warnings: Errors) -> VerifySpec | None:
    """``verify: {cosign: {key: FILE, keys: [FILE…], secretRef: {name, namespace}, maxPerPass: N}}``; each key file
    is read when ``environment``. A secretRef is only the cluster's: a warning here, an error when a tag must be
    verified (the runner's ``_checker``)."""
    v = r.sub("verify", {"cosign"})
    c = v.sub("cosign", {"key", "keys", "secretRef", "maxPerPass"}, required=True)
    secret, unresolved = None, ""
    if c.has("secretRef"):
        s = c.sub("secretRef", {"name", "namespace"})
        name, namespace = s.text("name", required=True), s.text("namespace", required=True)
        if name and namespace:
            secret = Reference("Secret", namespace, name, c.where, "secretRef", Purpose.COSIGN_KEYS)
            why = "is read from the cluster, which `imagebot run` cannot reach: an update this gate must verify fails"
            warnings.add(c.file, c.node, "secretRef", f"{c.where}.secretRef", f"{secret.target} ({secret.purpose}) {why}")
            unresolved = (
                f"{c.where}.secretRef: {secret.target} ({secret.purpose}) is read from the cluster, which `imagebot run` "
                "cannot reach: nothing is selected (mount the Secret and give its *.pub file as key, or use "
                "`imagebot controller` with the imagebot.dev/cosign-secret annotation)"
            )
    names = ([c.text("key")] if c.has("key") else []) + list(c.strings("keys"))
    paths = tuple(Path(n) for n in names if n)
    if not paths and not c.has("secretRef"):
        c.error(None, "give the public key: key: FILE, keys: [FILE, …], or secretRef: {name, namespace}")
    if environment:
        for n, path in enumerate(paths):
            where = "key" if c.has("key") and n == 0 else "keys"
            from imagebot.verify import VerifyError, load_keys  # only a config that verifies signatures loads cosign

            try:
                load_keys(path.read_bytes(), str(path))
            except OSError as exc:
                c.error(where, f"cannot read {path}: {exc.strerror or exc}")
            except VerifyError as exc:
                c.error(where, str(exc))
    limit = c.number("maxPerPass", int, 10)
    return VerifySpec(paths, limit, secret, unresolved=unresolved) if paths or secret else None


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
    warnings = Errors()  # valid, but only the cluster could provide it (config validate prints them)
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
            "discover",
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
        im = _Reader(errors, file, node, f"images[{i}]", {"name", "repository", "interval", "exclude", "environments", "verify"})
        name = im.text("name", f"image{i}", required=True)
        repo = im.parsed("repository", refs.parse_name, required=True)
        excludes = DEFAULT_EXCLUDES + im.strings("exclude")
        image_interval = im.duration("interval", interval, positive=True)
        image_verify = _verify(im, environment, warnings) if im.has("verify") else None
        envs_node = im.sub("environments", None, required=True)
        envs = []
        for env_name in envs_node.node:
            where = f"images[{i}].environments.{env_name}"
            if not isinstance(env_name, str) or not env_name.strip():
                errors.add(file, envs_node.node, env_name, where, "an environment's name must be a non-empty string")
                continue
            en = envs_node.sub(
                env_name, {"policy", "target", "setter", "promote", "minAge", "allowDowngrade", "hold", "digest", "verify"}
            )
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
                _verify(en, environment, warnings) if en.has("verify") else image_verify,
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
    discover = _discovers(top, {g.name for g in gits}, errors, file)
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
        discover=discover,
        warnings=tuple(warnings.items),
    )


def _discovers(top: _Reader, gits: set[str], errors: Errors, file: str) -> tuple[DiscoverConfig, ...]:
    """``discover:``: one entry (a mapping) or a list of them; two entries on one git path would fight over it."""
    node = top.get("discover", (dict, list), None)
    if node is None:
        return ()
    if isinstance(node, dict):
        readers = [top.sub("discover", _DISCOVER_KEYS)]
    else:
        readers = [_Reader(errors, file, n, f"discover[{i}]", _DISCOVER_KEYS) for i, n in enumerate(node)]
    out: list[DiscoverConfig] = []
    for d in readers:
        entry = _discover(d, gits)
        if entry is None:
            continue
        clash = next((o for o in out if o.git == entry.git and _nested(o.path, entry.path)), None)
        if clash is not None:  # both would edit the files they share
            d.error("path", f"overlaps the discover entry for {clash.path or '.'} of git {entry.git}")
            continue
        out.append(entry)
    return tuple(out)


def _nested(a: str, b: str) -> bool:
    """Whether one repository path holds the other (or they are the same)."""
    a, b = a.strip("/"), b.strip("/")
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


_DISCOVER_KEYS = {"git", "path", "policy", "include", "exclude", "mode", "pushBranch", "labels", "reviewers", "interval"}


def _discover(d: _Reader, gits: set[str]) -> DiscoverConfig | None:
    """``{git, path, policy: {semver: patch|minor|major}, include: [GLOB], exclude: [GLOB], mode, pushBranch, labels,
    reviewers, interval}`` (the delivery keys as in an environment's target; the interval defaults to the config's)."""
    git = d.text("git", next(iter(gits)) if len(gits) == 1 else None, required=len(gits) != 1)
    if git is not None and git not in gits:
        d.error("git", f"{git!r} names no entry of git:")
    p = d.sub("policy", {"semver"}, required=True)
    level = p.choice("semver", DiscoverLevel)
    if level is None and not p.has("semver"):
        p.error(None, "give semver: patch, minor or major")
    mode = d.choice("mode", Mode, Mode.PUSH)
    push_branch = d.text("pushBranch")
    if mode is Mode.PUSH_BRANCH and not push_branch:
        d.error("pushBranch", "required with mode push-branch")
    if git is None or level is None:
        return None
    path = d.text("path", "")
    labels, reviewers = d.strings("labels"), d.strings("reviewers")
    interval = d.duration("interval", 0.0, positive=True) if d.has("interval") else None
    return DiscoverConfig(
        git, path, level, d.strings("include"), d.strings("exclude"), mode, push_branch, labels, reviewers, interval or None
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


def _flux(docs: list[tuple[str, Any]], errors: Errors) -> Config | None:
    """Flux's objects (and v1 Secrets / ServiceAccounts they name) through the translation ``controller`` shares."""
    from imagebot.config import flux  # only a configuration of Flux objects needs the translation (~30 ms to import)

    result = flux.translate([d for _, d in docs], origins=[f for f, _ in docs])
    errors.items += [str(p) for p in result.errors]
    if errors.items:
        return None
    try:
        return result.config()
    except flux.FluxError as exc:
        errors.items += [str(p) for p in exc.problems]
        return None



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
    native: list[tuple[str, Any]] = []
    flux_docs: list[tuple[str, Any]] = []
    for f, d in docs:
        api = d.get("apiVersion") if isinstance(d, dict) else None
        if api == NATIVE_API:
            native.append((f, d))
        elif is_flux_document(d):
            flux_docs.append((f, d))
        else:
            kind = d.get("kind") if isinstance(d, dict) else _shown(d)
            errors.add(f, d, None, str(kind), f"not an imagebot Config ({NATIVE_API}) nor a Flux image automation object")
    if len(native) > 1 or (native and flux_docs):
        errors.add(
            *(native + flux_docs)[1][:2],
            None,
            "config",
            "only one native Config document is allowed, and no Flux objects beside it",
        )
    cfg = None
    if not errors.items:
        cfg = _native(native[0][1], native[0][0], errors, environment) if native else _flux(flux_docs, errors)
        if cfg is not None and not native and environment and (problem := _state_problem(cfg.state_file)):
            errors.items.append(f"{cfg.state_file}: {problem}")
    if errors.items or cfg is None:
        ordered = sorted(errors.items, key=_line_key)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(ordered or ["no configuration found"]))
    return cfg


def is_flux_document(d: Any) -> bool:
    """A document file mode reads beside Flux's objects: theirs, or a v1 Secret / ServiceAccount they name (here, not
    in imagebot.config.flux: a configuration without them never imports the translation)."""
    if not isinstance(d, Mapping):
        return False
    api, kind = d.get("apiVersion"), d.get("kind")
    if not isinstance(api, str):
        return False
    return api.startswith(("image.toolkit.fluxcd.io/", "source.toolkit.fluxcd.io/")) or (
        api == "v1" and kind in ("Secret", "ServiceAccount")
    )
