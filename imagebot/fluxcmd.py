"""`imagebot template render` and `imagebot secret check`: try a Flux messageTemplate or a Flux Secret locally.

Both read files only (never the cluster) and print nothing secret: a Secret check prints which registries,
which transport and which keys it found, never a value.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from gitopskit import fluxsecrets as fs
from gitopskit.yamlsafe import Limits, YamlError, load_all
from imagebot.errors import ExitCode, UsageError
from imagebot.gitops import gotemplate as gt

MAX_DATA_BYTES = 4 * 1024 * 1024
_SECRET_FILE_LIMITS = Limits(max_bytes=4 * fs.MAX_SECRET_BYTES, max_depth=20, max_nodes=100_000)

TEMPLATE_HELP = f"""data (--data FILE, JSON; without it, a sample of two files, two objects and three changes):
  {{"automation": {{"namespace": "flux-system", "name": "podinfo-update"}},
   "changes": [{{"file": "apps/podinfo.yaml",
                "object": {{"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo", "namespace": "apps"}},
                "oldValue": "ghcr.io/org/app:1.0.0", "newValue": "ghcr.io/org/app:1.1.0",
                "setter": "flux-system:podinfo", "image": "ghcr.io/org/app:1.1.0"}}],
   "values": {{"cluster": "prod"}}}}
supported: {{{{ .AutomationObject }}}}, .Changed (.FileChanges, .Changes, .Objects), .Values, .Updated (v1beta2 only),
  if / else if / else, range (lists, maps in sorted key order, integers; $i, $e :=; break, continue), with,
  variables, pipelines, comments, {{{{- -}}}} trimming, functions: {", ".join(gt.SUPPORTED_FUNCTIONS)};
  printf verbs %v %s %d %q %t %x %X %% with flags - + space 0, width and precision.
refused (exit 2, with line:column): define/template/block, any other function, float constants, other printf verbs;
  a template over {gt.MAX_TEMPLATE_BYTES} bytes, nesting over {gt.MAX_DEPTH}, output over {gt.MAX_OUTPUT_BYTES} bytes.
"""


def _read(path: str, limit: int, what: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(raw) > limit:
        raise UsageError(f"{what} {path} is larger than {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None


def _str(obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"--data: {where}.{key} must be a string")
    return value


def data_from_json(doc: Any, api_version: str) -> gt.TemplateData:
    if not isinstance(doc, dict):
        raise UsageError("--data: the top level must be an object")
    auto = doc.get("automation", {})
    if not isinstance(auto, dict):
        raise UsageError("--data: automation must be an object")
    records = []
    changes = doc.get("changes", [])
    if not isinstance(changes, list):
        raise UsageError("--data: changes must be a list")
    for n, c in enumerate(changes):
        where = f"changes[{n}]"
        if not isinstance(c, dict) or not isinstance(c.get("object", {}), dict):
            raise UsageError(f"--data: {where} must be an object with an object")
        o = c.get("object", {})
        obj = gt.ObjectId(
            _str(o, "apiVersion", where + ".object", ""),
            _str(o, "kind", where + ".object", ""),
            _str(o, "name", where + ".object", ""),
            _str(o, "namespace", where + ".object", ""),
        )
        records.append(
            gt.ChangeRecord(
                _str(c, "file", where),
                obj,
                _str(c, "oldValue", where),
                _str(c, "newValue", where),
                _str(c, "setter", where, ""),
                _str(c, "image", where, ""),
            )
        )
    values = doc.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise UsageError("--data: values must be a map of strings")
    return gt.template_data(
        _str(auto, "namespace", "automation", "flux-system"), _str(auto, "name", "automation", "automation"),
        records, values, api_version,
    )  # fmt: skip


def cmd_template_render(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    source = _read(args.file, gt.MAX_TEMPLATE_BYTES, "template")
    if args.data is None:
        data = gt.sample_data(args.api_version)
    else:
        try:
            doc = json.loads(_read(args.data, MAX_DATA_BYTES, "data file"))
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"--data {args.data}: not valid JSON ({type(exc).__name__})") from None
        data = data_from_json(doc, args.api_version)
    template = gt.parse(source, Path(args.file).name)
    message = template.render(data) if source else gt.DEFAULT_MESSAGE
    out.write(message)  # exactly as rendered: trailing whitespace is part of what is being tried
    return int(ExitCode.OK)


def _load_secret(path: str) -> fs.Secret:
    text = _read(path, _SECRET_FILE_LIMITS.max_bytes, "Secret file")
    try:
        docs = load_all(text, _SECRET_FILE_LIMITS)
    except YamlError as exc:
        raise UsageError(f"{path}: {exc}") from None
    secrets = [d.data for d in docs if isinstance(d.data, dict) and d.data.get("kind") == "Secret"]
    if len(secrets) != 1:
        raise UsageError(f"{path}: expected exactly one Secret (kind: Secret), found {len(secrets)}")
    return fs.secret_from_object(secrets[0])


def cmd_secret_check(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    secret = _load_secret(args.file)
    if args.use == "registry":
        cfg = fs.docker_config(secret)
        print(f"{secret.ref}: registry credentials for {', '.join(cfg.registries) or 'no registry'}", file=out)
        if args.registry:
            host, _, path = args.registry.partition("/")
            found = cfg.lookup(host, path)
            print(f"{args.registry}: {'user ' + repr(found.username) if found else 'no credentials'}", file=out)
            return int(ExitCode.OK if found else ExitCode.NOTHING)
    elif args.use == "git":
        if not args.url:
            raise UsageError("--for git needs --url (the GitRepository's URL decides the transport)")
        creds = fs.git_credentials(secret, args.url)
        extra = " with ca.crt" if creds.ca else ""
        who = f" as {creds.username!r}" if creds.username else ""
        print(f"{secret.ref}: Git {creds.kind.value} credentials{who}{extra} for {args.url}", file=out)
    elif args.use == "tls":
        tls = fs.tls_material(secret)
        parts = [p for p, present in (("ca.crt", tls.ca), ("client certificate and key", tls.cert)) if present]
        print(f"{secret.ref}: TLS {' and '.join(parts)}", file=out)
    else:
        key = fs.signing_key(secret, args.signing_type)
        print(f"{secret.ref}: {key.type.value} signing key{' with a passphrase' if key.passphrase else ''}", file=out)
    return int(ExitCode.OK)


def add_flags(sub: argparse._SubParsersAction, exit_codes: str) -> None:  # type: ignore[type-arg]
    fmt = argparse.RawDescriptionHelpFormatter
    tp = sub.add_parser("template", help="Flux messageTemplate (Go text/template subset): render one to try it")
    tsub = tp.add_subparsers(dest="template_command", metavar="COMMAND", parser_class=type(tp))
    tsub.required = True
    r = tsub.add_parser(
        "render",
        help="render a messageTemplate over sample or given data",
        description="Render a Flux ImageUpdateAutomation messageTemplate as imagebot will for a commit.",
        epilog=TEMPLATE_HELP + "\n" + exit_codes,
        formatter_class=fmt,
    )
    r.add_argument("--file", required=True, metavar="TEMPLATE", help="the template text (e.g. copied from the object)")
    r.add_argument("--data", metavar="JSON", help="a JSON file with automation, changes and values (default: a sample)")
    r.add_argument("--api-version", choices=[v.value for v in gt.ApiVersion], default=gt.ApiVersion.V1.value,
                   help="the ImageUpdateAutomation's version: .Updated exists only in v1beta2 (default v1)")  # fmt: skip
    r.set_defaults(func=cmd_template_render)

    sp = sub.add_parser("secret", help="Flux Secret formats: check a Secret manifest without printing its values")
    ssub = sp.add_subparsers(dest="secret_command", metavar="COMMAND", parser_class=type(sp))
    ssub.required = True
    c = ssub.add_parser(
        "check",
        help="parse a Secret manifest as Flux would use it; print what it provides, never a value",
        epilog=exit_codes,
        formatter_class=fmt,
    )
    c.add_argument("file", metavar="FILE", help="a Secret manifest (YAML or JSON, data or stringData)")
    c.add_argument("--for", dest="use", required=True, choices=["registry", "git", "tls", "signing"],
                   help="registry: secretRef of an ImageRepository; git: of a GitRepository; tls: certSecretRef; "
                   "signing: signingKey")  # fmt: skip
    c.add_argument("--url", help="--for git: the repository URL (https://… or ssh://…)")
    c.add_argument("--registry", metavar="HOST[/PATH]", help="--for registry: which credentials would be used for it")
    c.add_argument("--signing-type", choices=["gpg", "ssh"], default="gpg", help="--for signing: signingKey.type")
    c.set_defaults(func=cmd_secret_check)
