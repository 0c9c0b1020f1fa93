"""`config validate` catches what `run` would trip on, and never shows a traceback: every field is
type-checked where it enters, durations are finite (and > 0 where they pace a loop), files the
config names must exist, the state directory must be writable; enums list their allowed values."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagebot.cli import main

CONFIG = Path(__file__).resolve().parents[3] / "config"


def native(tmp: Path) -> dict[str, Any]:
    return {
        "apiVersion": "imagebot.dev/v1",
        "kind": "Config",
        "interval": "5m",
        "debounce": "2s",
        "stateFile": str(tmp / "state.db"),
        "cacheDir": str(tmp / "cache"),
        "registries": [{"host": "127.0.0.1:9", "plainHTTP": True, "maxConcurrency": 2, "requestsPerSecond": 5}],
        "git": [
            {
                "name": "c",
                "url": "https://example.com/c.git",
                "auth": {"usernameEnv": "U", "tokenEnv": "T"},
                "author": {"name": "bot", "email": "bot@example.com"},
                "github": {"repo": "acme/c", "tokenEnv": "GH"},
            }
        ],
        "images": [
            {
                "name": "app",
                "repository": "127.0.0.1:9/acme/app",
                "interval": "1m",
                "exclude": ["^.*-debug$"],
                "environments": {
                    "dev": {"policy": {"semver": ">=1.0.0-0"}, "setter": "apps:dev", "target": {"git": "c", "path": "dev"}},
                    "prod": {
                        "promote": {"from": "dev", "soak": "1h"},
                        "minAge": "5m",
                        "digest": True,
                        "target": {"git": "c", "mode": "pull-request", "labels": ["x"], "reviewers": ["y"]},
                    },
                },
            }
        ],
    }


def validate(path: Path, *extra: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["config", "validate", *extra, str(path)], out=out, err=err)
    return code, err.getvalue()


def write(tmp: Path, doc: Any, name: str = "c.yaml") -> Path:
    f = tmp / name
    f.write_text(yaml.safe_dump_all(doc) if isinstance(doc, list) else yaml.safe_dump(doc))
    return f


def mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


IMG = ("images", 0)
DEV = (*IMG, "environments", "dev")
PROD = (*IMG, "environments", "prod")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ((*IMG, "exclude"), [1], "images[0].exclude[0]: must be a string, not 1"),
        (
            (*DEV, "policy", "exclude"),
            [{"a": 1}],
            "images[0].environments.dev.policy.exclude[0]: must be a string, not a mapping",
        ),
        (("interval",), 0, "config.interval: invalid duration 0: must be greater than zero"),
        (("interval",), -5, "config.interval: invalid duration -5: must be a finite number of seconds, not negative"),
        (("interval",), math.nan, "config.interval: invalid duration nan"),
        (("interval",), "fivemin", "config.interval: invalid duration 'fivemin'"),
        (("debounce",), -1, "config.debounce: invalid duration -1"),
        (("debounce",), math.inf, "config.debounce: invalid duration inf"),
        ((*IMG, "interval"), "0s", "images[0].interval: invalid duration '0s': must be greater than zero"),
        ((*PROD, "promote", "soak"), [1], "images[0].environments.prod.promote.soak: must be a string or an integer, not a list"),
        ((*PROD, "minAge"), {}, "images[0].environments.prod.minAge: must be a string or an integer, not a mapping"),
        ((*IMG, "repository"), ["a"], "images[0].repository: must be a string, not a list"),
        ((*IMG, "name"), 7, "images[0].name: must be a string, not 7"),
        ((*IMG, "environments"), "dev", "images[0].environments: must be a mapping, not 'dev'"),
        ((*DEV, "target"), "c", "images[0].environments.dev.target: must be a mapping, not 'c'"),
        ((*DEV, "target", "labels"), "x", "images[0].environments.dev.target.labels: must be a list, not 'x'"),
        ((*DEV, "target", "mode"), "sideways", "'sideways' is not one of the allowed values: push, push-branch, pull-request"),
        ((*DEV, "policy"), {"numerical": "up"}, "invalid order 'up': use 'asc' or 'desc'"),
        ((*DEV, "setter"), ["x"], "images[0].environments.dev.setter: must be a string, not a list"),
        (("registries", 0, "maxConcurrency"), 0, "registries[0].maxConcurrency: must be greater than 0, not 0"),
        (
            ("registries", 0, "requestsPerSecond"),
            math.nan,
            "registries[0].requestsPerSecond: must be an integer or a number, not nan",
        ),
        (("registries", 0, "credentials"), "x", "registries[0].credentials: must be a mapping, not 'x'"),
        (("git", 0, "auth"), ["x"], "git[0].auth: must be a mapping, not a list"),
        (("git", 0, "templates"), {"title": 3}, "git[0].templates.title: must be a string, not 3"),
        (("git", 0, "templates"), {"commit": "{{ x"}, "git[0].templates.commit: template error: unexpected end of template"),
        (("stateFile",), 5, "config.stateFile: must be a string, not 5"),
        (("kind",), "Other", "config.kind: 'Other' is not one of the allowed values: Config"),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, tuple) else None,
)
def test_a_bad_field_is_reported_with_its_place_never_raised(
    tmp_path: Path, path: tuple[Any, ...], value: Any, message: str
) -> None:
    code, err = validate(write(tmp_path, mutate(native(tmp_path), path, value)))
    assert code == 2, err
    assert message in err, err


def test_the_unmutated_base_is_valid(tmp_path: Path) -> None:
    assert validate(write(tmp_path, native(tmp_path))) == (0, "")


def test_files_the_config_names_must_exist_at_validate(tmp_path: Path) -> None:
    doc = native(tmp_path)
    doc["registries"][0]["caFile"] = str(tmp_path / "missing-ca.crt")
    doc["registries"][0]["credentials"] = {"file": str(tmp_path / "creds"), "dockerConfig": str(tmp_path / "docker")}
    doc["git"][0]["auth"] = {"sshKeyFile": str(tmp_path / "key"), "knownHostsFile": str(tmp_path)}
    doc["git"][0]["signingKeyFile"] = str(tmp_path / "signing.asc")
    f = write(tmp_path, doc)
    code, err = validate(f)
    assert code == 2
    for expected in [
        f"registries[0].caFile: file {tmp_path}/missing-ca.crt does not exist",
        f"registries[0].credentials.file: file {tmp_path}/creds does not exist",
        f"registries[0].credentials.dockerConfig: directory {tmp_path}/docker does not exist",
        f"git[0].auth.sshKeyFile: file {tmp_path}/key does not exist",
        f"git[0].auth.knownHostsFile: file {tmp_path} does not exist or is not a file",
        f"git[0].signingKeyFile: file {tmp_path}/signing.asc does not exist",
    ]:
        assert expected in err, err
    # the same file is fine where the deployment's files are not: CI validating outside the cluster
    assert validate(f, "--no-environment") == (0, "")
    out, err_io = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(f)], out=out, err=err_io) == 2
    assert "registries[0].caFile: file" in err_io.getvalue()


@pytest.mark.parametrize("where", ["missing/state.db", "a-file/state.db"], ids=["missing-directory", "parent-is-a-file"])
@pytest.mark.parametrize("command", ["validate", "status", "run"])
def test_an_unusable_state_file_is_a_clear_error_exit_2(tmp_path: Path, where: str, command: str) -> None:
    (tmp_path / "a-file").write_text("x")
    f = write(tmp_path, mutate(native(tmp_path), ("stateFile",), str(tmp_path / where)))
    argv = {"validate": ["config", "validate", str(f)], "status": ["status", "--config", str(f)]}.get(
        command, ["run", "--once", "--config", str(f)]
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out=out, err=err) == 2
    assert (
        f"config.stateFile: state file {tmp_path / where}: directory {tmp_path / where.split('/')[0]} does not exist"
        in err.getvalue()
    )


FLUX = list(yaml.safe_load_all((CONFIG / "flux" / "automation.yaml").read_text()))


@pytest.mark.parametrize(
    ("doc", "path", "value", "message"),
    [
        (1, ("metadata",), "podinfo", "ImageRepository.metadata: must be a mapping, not 'podinfo'"),
        (2, ("spec",), "x", ":29: ImagePolicy flux-system/podinfo.spec: must be a mapping, not 'x'"),
        (
            2,
            ("spec", "policy", "semver"),
            "6.x",
            "ImagePolicy flux-system/podinfo.spec.policy.semver: must be a mapping, not '6.x'",
        ),
        (1, ("spec", "interval"), "fivemin", "ImageRepository flux-system/podinfo.spec.interval: invalid duration 'fivemin'"),
        (
            1,
            ("spec", "interval"),
            0,
            "ImageRepository flux-system/podinfo.spec.interval: invalid duration 0: must be greater than zero",
        ),
        (1, ("spec", "exclusionList"), [1], "ImageRepository flux-system/podinfo.spec.exclusionList[0]: must be a string, not 1"),
        (1, ("spec", "image"), ["x"], "ImageRepository flux-system/podinfo.spec.image: must be a string, not a list"),
        (
            3,
            ("spec", "sourceRef"),
            "fleet",
            "ImageUpdateAutomation flux-system/fleet.spec.sourceRef: must be a mapping, not 'fleet'",
        ),
        (
            3,
            ("spec", "git", "push"),
            "main",
            "ImageUpdateAutomation flux-system/fleet.spec.git.push: must be a mapping, not 'main'",
        ),
        (
            3,
            ("spec", "update", "strategy"),
            "Regex",
            "ImageUpdateAutomation flux-system/fleet.spec.update.strategy: 'Regex' is not one of the allowed values: Setters",
        ),
        (
            2,
            ("spec", "digestReflectionPolicy"),
            "Sometimes",
            "'Sometimes' is not one of the allowed values: Never, IfNotPresent, Always",
        ),
        (0, ("spec", "url"), 5, "GitRepository flux-system/fleet.spec.url: must be a string, not 5"),
        (0, ("metadata", "name"), ["x"], "GitRepository.metadata.name: must be a string, not a list"),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, (tuple, int)) else None,
)
def test_a_bad_flux_field_is_reported_never_raised(
    tmp_path: Path, doc: int, path: tuple[Any, ...], value: Any, message: str
) -> None:
    docs = copy.deepcopy(FLUX)
    docs[doc] = mutate(docs[doc], path, value)
    code, err = validate(write(tmp_path, docs))
    assert code == 2, err
    assert message in err, err


# -- fuzz: any field replaced by any kind of value, anywhere ------------------------------------

VALUES = st.one_of(
    st.sampled_from(["", "fivemin", "-5", "0", "5m", "push", "pull-request", "^1", "[", "*", "127.0.0.1:9/x/y"]),
    st.integers(-3, 3),
    st.sampled_from([math.nan, math.inf, -0.5, 1.5, True, False, None]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.dictionaries(st.sampled_from(["a", "semver", "git", "from"]), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validate_never_raises_on_any_mutated_config(tmp_path: Path, data: st.DataObject) -> None:
    flux = data.draw(st.booleans(), label="flux")
    base: Any = copy.deepcopy(FLUX) if flux else native(tmp_path)
    paths = _paths(base)
    n = data.draw(st.integers(1, 3), label="mutations")
    for _ in range(n):
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(VALUES, label="value")
        base = mutate(base, path, value) if not flux else _mutate_docs(base, path, value)
        paths = _paths(base)
        if not paths:
            break
    f = write(tmp_path, base)
    code, err = validate(f)  # an unexpected exception fails the test
    assert code in (0, 2), err
    assert code == 0 or err.startswith("imagebot: error: "), err
    assert "Traceback" not in err


def _mutate_docs(docs: list[Any], path: tuple[Any, ...], value: Any) -> list[Any]:
    out = copy.deepcopy(docs)
    if len(path) == 1:
        out[path[0]] = value
        return out
    out[path[0]] = mutate(out[path[0]], path[1:], value)
    return out
