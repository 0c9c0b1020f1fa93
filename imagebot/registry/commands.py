"""The registry side of the CLI: build clients from flags, list tags, resolve digests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from imagebot import refs
from imagebot.errors import ExitCode, UsageError
from imagebot.registry import Platform, Registries, RegistrySettings
from imagebot.registry.auth import Chain, CredentialSource, DockerConfigCredentials, EnvCredentials, FileCredentials


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
    g.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="per-request timeout (default 15)")


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
    default = RegistrySettings(host="", ca_file=ca, credentials=Chain(tuple(sources)), timeout=args.timeout)
    per_host = {
        h: RegistrySettings(host=h, ca_file=ca, plain_http=True, credentials=default.credentials, timeout=args.timeout)
        for h in args.insecure_registry
    }
    return Registries(default, per_host)


def list_tags_for(args: argparse.Namespace) -> list[str]:
    image = refs.parse(args.image)
    if image.tag or image.digest:
        raise UsageError(f"--image {args.image}: give the repository without tag or digest")
    return registries_from_args(args).client(image.canonical_registry).list_tags(image.canonical_path)


def cmd_tags(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    image = refs.parse(args.image)
    if image.tag or image.digest:
        raise UsageError(f"{args.image}: give the repository without tag or digest")
    client = registries_from_args(args).client(image.canonical_registry)
    tags = sorted(client.list_tags(image.canonical_path))
    if args.json:
        print(json.dumps({"repository": image.canonical_name, "tags": tags}, indent=2), file=out)
    else:
        for t in tags:
            print(t, file=out)
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
