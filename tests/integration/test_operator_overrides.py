"""Operator overrides from the CLI on real parts (registry, Git over HTTP): a hold stops an environment's
updates with its reason in status, a release lets the next pass update it, an approval cuts a soak short."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from imagebot.cli import main
from tests.fixtures.botconfig import deployment, git_env, imagebot_config
from tests.fixtures.git import GitHttp, make_bare, read_file
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git


IMAGES = """images:
  - name: app
    repository: {registry}/ov/app
    environments:
      dev:
        policy: {{semver: "^1"}}
        setter: ov:app-dev
        target: {{git: config, path: dev}}
      prod:
        promote: {{from: dev, soak: 24h}}
        setter: ov:app-prod
        target: {{git: config, path: prod}}
"""


def config(tmp_path: Path, registry: str, url: str) -> str:
    return imagebot_config(IMAGES.format(registry=registry), state=tmp_path / "state.db", cache=tmp_path / "cache",
                           registries=[registry], url=url, env="OV")  # fmt: skip


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_hold_release_and_approve_from_the_cli(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = registry_plain.host
    bare = make_bare(
        git_http.root,
        f"ov{os.urandom(4).hex()}",
        {f"{e}/deploy.yaml": deployment(f"{host}/ov/app:1.0.0", f"ov:app-{e}", f"app-{e}") for e in ("dev", "prod")},
    )
    for k, v in git_env("OV").items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(tmp_path, host, git_http.url(bare)))
    c = ("--config", str(cfg))
    registry_plain.pusher().push("ov/app", ["1.0.0"])
    assert cli("run", "--once", *c)[0] == 0

    assert cli("hold", "app", "dev", "--reason", "incident 42", "--by", "alice", *c)[0] == 0
    registry_plain.pusher().push("ov/app", ["1.1.0"], distinct=True)
    assert cli("run", "--once", *c)[0] == 0
    assert "ov/app:1.0.0 #" in read_file(bare, "main", "dev/deploy.yaml"), "held: dev is not updated"
    status = cli("status", *c)[1]
    dev = next(line for line in status.splitlines() if line.startswith("app dev:"))
    assert "on hold by alice since " in dev and ": incident 42" in dev and "HELD by alice" in dev, status

    code, out, _ = cli("release", "app", "dev", "--by", "bob", *c)
    assert code == 0 and "released by bob" in out
    assert cli("run", "--once", *c)[0] == 0
    assert "ov/app:1.1.0 #" in read_file(bare, "main", "dev/deploy.yaml"), "released: the next pass updates dev"
    assert cli("run", "--once", *c)[0] == 0
    assert "ov/app:1.0.0 #" in read_file(bare, "main", "prod/deploy.yaml"), "prod: 1.1.0 soaks in dev for 24h"
    assert "1.1.0 soaking in dev" in cli("status", *c)[1]

    code, out, _ = cli("approve", "app", "prod", "--by", "carol", *c)
    assert code == 0 and "1.1.0 approved by carol" in out
    assert "APPROVED 1.1.0 by carol" in cli("status", *c)[1]
    assert cli("run", "--once", *c)[0] == 0
    assert "ov/app:1.1.0 #" in read_file(bare, "main", "prod/deploy.yaml"), "approved: promoted without the soak"
    status = cli("status", *c)[1]
    assert "app prod: current 1.1.0" in status and "APPROVED" not in status, "the approval is spent once delivered"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hold", "nope", "dev"), "no image 'nope' in the config; images: app"),
        (("release", "app", "qa"), "image app has no environment 'qa'; environments: dev, prod"),
        (("approve", "app", "dev"), "app dev does not promote from another environment"),
        (("approve", "app", "prod"), "app dev has no current tag yet: nothing to approve"),
        (("hold", "app", "dev", "--by", "a\nb"), "--by: at most 200 characters, no control characters"),
    ],
)
def test_bad_targets_are_exit_2_naming_what_exists(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:1/x"))
    code, _, err = cli(*args, "--config", str(cfg))
    assert code == 2 and message in err and "Traceback" not in err, err
