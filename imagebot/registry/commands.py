"""The registry side of the CLI: build clients from flags, list tags, resolve digests."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from imagebot import refs
from imagebot.errors import ExitCode, UsageError
from imagebot.policy import Selection, TagPolicy
from imagebot.registry import Platform, Registries, RegistrySettings
from imagebot.registry.auth import Chain, CredentialSource, DockerConfigCredentials, EnvCredentials, FileCredentials
from imagebot.verify import PublicKey, Verification


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("registry access (credentials never come from arguments)")
    g.add_argument("--ca-file", metavar="FILE", help="verify the registry's TLS certificate against this CA bundle")
    g.add_argument(
        "--insecure-registry",
        metavar="HOST",
        action="append",
        default=[],
        help="talk plain HTTP to HOST[:PORT] (explicit opt-in; repeatable)",
    )
    g.add_argument("--docker-config", metavar="DIR", help="docker config directory (default: $DOCKER_CONFIG, ~/.docker)")
    g.add_argument("--credentials-env", metavar="VAR", help="read 'user:password' from environment variable VAR")
    g.add_argument("--credentials-file", metavar="FILE", help="read 'user:password' from FILE")
    g.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="overall deadline of one registry call: a tag list with all its pages, a digest with its token (default 30)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"invalid --timeout {text!r}: give seconds, more than 0 and at most 3600")
    return value


def registries_from_args(args: argparse.Namespace) -> Registries:
    sources: list[CredentialSource] = []
    if args.credentials_env:
        sources.append(EnvCredentials(args.credentials_env))
    if args.credentials_file:
        sources.append(FileCredentials(Path(args.credentials_file)))
    sources.append(DockerConfigCredentials(Path(args.docker_config) if args.docker_config else None))
    ca = Path(args.ca_file) if args.ca_file else None
    if ca is not None and not ca.is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    default = RegistrySettings(host="", ca_file=ca, credentials=Chain(tuple(sources)), deadline=args.timeout)
    per_host = {h: replace(default, host=h, plain_http=True) for h in args.insecure_registry}
    return Registries(default, per_host)


def list_tags_for(args: argparse.Namespace, err: TextIO | None = None) -> list[str]:
    """The valid tags of ``--image``; the ignored invalid ones are reported on ``err``."""
    image = refs.parse(args.image)
    if image.tag or image.digest:
        raise UsageError(f"--image {args.image}: give the repository without tag or digest")
    listing = registries_from_args(args).client(image.canonical_registry).tag_listing(image.canonical_path)
    if listing.invalid_count and err is not None:
        print(f"imagebot: warning: {image.canonical_name}: {listing.describe_invalid()}", file=err)
    return list(listing.tags)


def cmd_tags(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    image = refs.parse(args.image)
    if image.tag or image.digest:
        raise UsageError(f"{args.image}: give the repository without tag or digest")
    client = registries_from_args(args).client(image.canonical_registry)
    listing = client.tag_listing(image.canonical_path)
    tags = sorted(listing.tags)
    if args.json:
        doc = {
            "repository": image.canonical_name,
            "tags": tags,
            "invalidCount": listing.invalid_count,  # tags outside the OCI grammar, ignored
            "invalid": list(listing.invalid),  # the first of them, each cut to 200 characters
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        for t in tags:
            print(t, file=out)
    if listing.invalid_count:
        print(f"imagebot: warning: {image.canonical_name}: {listing.describe_invalid()}", file=err)
    return int(ExitCode.OK)


def cmd_digest(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    image = refs.parse(args.image, require_version=True)
    platform = Platform.parse(args.platform) if args.platform else None
    client = registries_from_args(args).client(image.canonical_registry)
    reference = image.digest if image.tag is None and image.digest else image.tag
    assert reference is not None
    digest = client.manifest_digest(image.canonical_path, reference, platform)
    if args.json:
        print(
            json.dumps({"image": str(image), "platform": str(platform) if platform else None, "digest": digest}, indent=2),
            file=out,
        )
    else:
        print(digest, file=out)
    return int(ExitCode.OK)


def select_signed(args: argparse.Namespace, policy: TagPolicy, tags: list[str]) -> Selection:
    """``select --image … --cosign-key FILE``: the newest allowed tag whose cosign signature verifies."""
    from imagebot.registry.signatures import SignatureChecker
    from imagebot.verify import DEFAULT_LIMIT, explain, first_verified, load_keys

    keys: list[PublicKey] = []
    for name in args.cosign_key:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise UsageError(f"--cosign-key {name}: {exc.strerror or exc}") from None
        keys.extend(load_keys(data, name))
    image = refs.parse(args.image)
    checker = SignatureChecker(registries_from_args(args), keys)

    def check(tag: str) -> tuple[Verification, bool]:
        _, verdict, fetched = checker.check(image, tag, tags)
        return verdict, fetched

    gated = first_verified(policy.select, tags, check, DEFAULT_LIMIT)
    return explain(policy, tags, gated, DEFAULT_LIMIT)
