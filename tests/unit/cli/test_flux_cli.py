"""`imagebot template render` and `imagebot secret check`: exit codes, exact output, nothing secret printed."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from imagebot.cli import main


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_template_render_with_given_data_is_exact(tmp_path: Path) -> None:
    tpl = tmp_path / "msg.tpl"
    tpl.write_text(
        "{{ .AutomationObject }}: {{ range .Changed.Changes }}{{ .OldValue }} -> {{ .NewValue }}{{ end }} ({{ .Values.env }})"
    )
    data = tmp_path / "data.json"
    data.write_text(json.dumps({
        "automation": {"namespace": "apps", "name": "auto"},
        "changes": [{"file": "a.yaml", "object": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "oldValue": "1.0.0", "newValue": "1.1.0", "setter": "apps:web:tag"}],
        "values": {"env": "prod"},
    }))  # fmt: skip
    assert run(["template", "render", "--file", str(tpl), "--data", str(data)]) == (0, "apps/auto: 1.0.0 -> 1.1.0 (prod)", "")


def test_template_render_sample_data_and_refusals(tmp_path: Path) -> None:
    tpl = tmp_path / "msg.tpl"
    tpl.write_text("{{ len .Changed.Changes }} changes\n")
    assert run(["template", "render", "--file", str(tpl)]) == (0, "3 changes\n", "")
    tpl.write_text('ok\n{{ template "x" }}')
    code, out, err = run(["template", "render", "--file", str(tpl)])
    assert (code, out) == (2, "") and "msg.tpl:2:4: {{template}} (named templates) is outside the supported subset" in err
    tpl.write_text("{{ range .Updated.Images }}{{ . }}{{ end }}")
    code, out, err = run(["template", "render", "--file", str(tpl)])
    assert code == 2 and "removed in image.toolkit.fluxcd.io/v1" in err
    assert run(["template", "render", "--file", str(tpl), "--api-version", "v1beta2"])[0] == 0
    tpl.write_text("x" * 70_000)
    code, _, err = run(["template", "render", "--file", str(tpl)])
    assert code == 2 and "larger than 65536 bytes" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"changes": [{"file": 1}]}')
    tpl.write_text("x")
    code, _, err = run(["template", "render", "--file", str(tpl), "--data", str(bad)])
    assert code == 2 and "changes[0].file must be a string" in err and "Traceback" not in err
    code, _, err = run(["template", "render", "--file", str(tmp_path / "missing.tpl")])
    assert code == 2 and "cannot read template" in err


def test_secret_check_prints_what_not_the_values(tmp_path: Path) -> None:
    auths = {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"bot:hunter2").decode()}}}
    f = tmp_path / "regcred.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: regcred, namespace: flux-system}\n"
        "type: kubernetes.io/dockerconfigjson\n"
        f"stringData:\n  .dockerconfigjson: '{json.dumps(auths)}'\n"
    )
    code, out, err = run(["secret", "check", str(f), "--for", "registry", "--registry", "index.docker.io/library/nginx"])
    assert code == 0 and "hunter2" not in out + err
    assert out == "flux-system/regcred: registry credentials for docker.io\nindex.docker.io/library/nginx: user 'bot'\n"
    assert run(["secret", "check", str(f), "--for", "registry", "--registry", "ghcr.io"])[0] == 1
    code, _, err = run(["secret", "check", str(f), "--for", "git", "--url", "https://git.example/r"])
    assert code == 0  # a registry Secret has no Git keys: no credentials, which is valid for a public repository
    code, _, err = run(["secret", "check", str(f), "--for", "signing"])
    assert code == 2 and err == "imagebot: error: Secret flux-system/regcred: key 'git.asc' is missing\n"
    f.write_text("kind: Secret\nmetadata: {name: git}\ndata: {username: Z2l0, password: '!!!hunter2'}\n")
    code, _, err = run(["secret", "check", str(f), "--for", "git", "--url", "https://git.example/r"])
    assert code == 2 and "key 'password' is not valid base64" in err and "hunter2" not in err
    f.write_text("kind: ConfigMap\n")
    assert "expected exactly one Secret" in run(["secret", "check", str(f), "--for", "tls"])[2]
