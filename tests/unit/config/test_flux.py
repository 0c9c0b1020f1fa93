"""Flux's image objects → imagebot's config (imagebot/config/flux.py): file mode validates a realistic Flux setup
with warnings for what only the cluster holds, Secret manifests beside the objects resolve it, and the per-object
API the controller calls names the object and field of every problem."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopskit import fluxsecrets as fs
from imagebot.cli import main
from imagebot.config import flux
from imagebot.config.load import load
from imagebot.config.model import Purpose
from imagebot.errors import ConfigError

REALISTIC = Path(__file__).parent / "testdata" / "flux-realistic.yaml"
DOCS = list(yaml.safe_load_all(REALISTIC.read_text()))
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
PGP = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlFgE\n-----END PGP PRIVATE KEY BLOCK-----\n"


def secret(name: str, data: dict[str, str], kind: str = "Opaque", namespace: str = "flux-system") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "type": kind,
            "stringData": data}  # fmt: skip


def dockerconfig(registry: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    data = {".dockerconfigjson": json.dumps({"auths": {registry: {"auth": auth}}})}
    return secret("regcred", data, "kubernetes.io/dockerconfigjson")


SECRETS = [
    secret("git-auth", {"username": "bot", "password": "s3cret-git"}),
    dockerconfig("registry.example.com:5443", "puller", "s3cret-registry"),
    secret("registry-ca", {"ca.crt": CERT, "tls.crt": CERT, "tls.key": KEY}),
    secret("signing-key", {"git.asc": PGP, "passphrase": "open sesame"}),
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "image-puller", "namespace": "flux-system"}},
]


def write(tmp_path: Path, docs: list[Any], name: str = "flux.yaml") -> Path:
    f = tmp_path / name
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return f


def validate(*files: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["config", "validate", "--no-environment", *map(str, files)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_a_realistic_flux_file_validates_with_a_warning_per_field_only_the_cluster_holds() -> None:
    code, out, err = validate(REALISTIC)
    assert code == 0, err
    assert out == "valid: 2 image(s), 3 environment(s), 1 git target(s), 7 warning(s)\n"
    for field, target in [
        ("GitRepository flux-system/fleet.spec.secretRef", "Secret flux-system/git-auth (git credentials)"),
        ("ImageRepository flux-system/podinfo.spec.secretRef", "Secret flux-system/regcred (registry credentials)"),
        ("ImageRepository flux-system/podinfo.spec.certSecretRef", "Secret flux-system/registry-ca (registry TLS)"),
        ("ImageRepository flux-system/podinfo.spec.serviceAccountName", "ServiceAccount flux-system/image-puller"),
        ("ImageUpdateAutomation flux-system/fleet.spec.git.commit.signingKey.secretRef", "Secret flux-system/signing-key"),
    ]:
        assert f"{field}: {target}" in err, err
    assert all(line.startswith(f"warning: {REALISTIC}:") for line in err.splitlines()), err


def test_the_realistic_file_maps_to_images_environments_and_a_git_target_that_remember_what_is_unresolved() -> None:
    cfg = load([REALISTIC], environment=False)
    podinfo, minio = cfg.images
    assert [e.name for e in podinfo.environments] == ["podinfo", "podinfo-builds"]
    assert [e.setter for e in podinfo.environments] == ["flux-system:podinfo", "flux-system:podinfo-builds"]
    assert podinfo.environments[1].policy is not None and podinfo.environments[1].policy.extract == "$ts"
    assert minio.environments[0].policy is not None and minio.environments[0].policy.kind == "alphabetical"
    (git,) = cfg.git
    assert git.flux is not None and git.flux.message_template.startswith("Automated image update\n")
    assert git.flux.signing_key is None and git.credentials is None
    assert [(u.purpose, u.target) for u in git.unresolved] == [
        (Purpose.SIGNING, "Secret flux-system/signing-key"),
        (Purpose.GIT_AUTH, "Secret flux-system/git-auth"),
    ]
    (registry,) = cfg.registries
    assert registry.host == "registry.example.com:5443" and registry.credentials is None
    assert {u.purpose for u in registry.unresolved} == {Purpose.REGISTRY_AUTH, Purpose.REGISTRY_TLS, Purpose.PULL_SECRETS}
    assert podinfo.environments[0].target.path == "clusters/production"


def test_secret_manifests_beside_the_objects_resolve_them_and_leave_no_warning(tmp_path: Path) -> None:
    code, _, err = validate(REALISTIC, write(tmp_path, SECRETS, "secrets.yaml"))
    assert (code, err) == (0, ""), err
    cfg = load([REALISTIC, tmp_path / "secrets.yaml"], environment=False)
    (registry,) = cfg.registries
    assert registry.credentials == fs.RegistryCredentials("puller", "s3cret-registry")
    assert registry.tls is not None and registry.tls.ca == CERT and registry.tls.key == KEY
    (git,) = cfg.git
    assert git.credentials is not None and (git.credentials.username, git.credentials.password) == ("bot", "s3cret-git")
    assert git.flux is not None and git.flux.signing_key is not None and git.flux.signing_key.passphrase == "open sesame"
    assert git.unresolved == () and registry.unresolved == ()
    assert "s3cret" not in repr(cfg), "secret values never show in a repr"


def test_a_malformed_secret_is_an_error_naming_the_secret_and_key_never_the_value(tmp_path: Path) -> None:
    bad = [*SECRETS[:3], secret("signing-key", {"git.asc": "not a key at all"}), SECRETS[4]]
    code, _, err = validate(REALISTIC, write(tmp_path, bad, "secrets.yaml"))
    assert code == 2
    assert (
        "ImageUpdateAutomation flux-system/fleet.spec.git.commit.signingKey.secretRef: Secret flux-system/signing-key: "
        "key 'git.asc' is not an ASCII-armored OpenPGP private key" in err
    ), err
    assert "not a key at all" not in err


@pytest.mark.parametrize(
    ("template", "construct"),
    [
        ('{{ template "header" . }}', "template"),
        ("{{ .Changed.Change }}", "Change"),
        ("{{ sha256sum .AutomationObject.Name }}", "sha256sum"),
        ("{{ range .Updated.Images }}{{ . }}{{ end }}", "Updated"),
        ("{{ printf \"%f\" 1 }}", "%f"),
    ],
    ids=["define-template", "misspelt-field", "unsupported-function", "v1-has-no-Updated", "printf-verb"],
)
def test_a_message_template_outside_the_subset_fails_at_load_naming_the_construct(
    tmp_path: Path, template: str, construct: str
) -> None:
    docs = [dict(d) for d in DOCS]
    docs[-1] = json.loads(json.dumps(docs[-1]))
    docs[-1]["spec"]["git"]["commit"]["messageTemplate"] = template
    code, _, err = validate(write(tmp_path, docs))
    assert code == 2, err
    line = next(x for x in err.splitlines() if "messageTemplate" in x)
    assert "ImageUpdateAutomation flux-system/fleet.spec.git.commit.messageTemplate: messageTemplate:1:" in line, line
    assert construct in line, line


def test_v1beta2_keeps_the_deprecated_updated_data(tmp_path: Path) -> None:
    docs = json.loads(json.dumps(DOCS))
    docs[-1]["apiVersion"] = "image.toolkit.fluxcd.io/v1beta2"
    docs[-1]["spec"]["git"]["commit"]["messageTemplate"] = "{{ range .Updated.Images }}{{ println . }}{{ end }}"
    code, _, err = validate(write(tmp_path, docs))
    assert code == 0, err


@pytest.mark.parametrize(
    ("path", "expected"),
    [("./clusters/production", "clusters/production"), ("./.config/apps", ".config/apps"), ("./", ""), (".", ""),
     ("apps//prod/", "apps/prod"), ("..config/apps", "..config/apps"), ("apps/../prod", "prod")],
    ids=["dot-slash", "hidden-directory", "root", "dot", "untidy", "dots-in-a-name", "up-and-back"],
)  # fmt: skip
def test_the_update_path_is_normalised_relative_to_the_repository_root(tmp_path: Path, path: str, expected: str) -> None:
    docs = json.loads(json.dumps(DOCS))
    docs[-1]["spec"]["update"]["path"] = path
    cfg = load([write(tmp_path, docs)], environment=False)
    assert cfg.images[0].environments[0].target.path == expected


@pytest.mark.parametrize("path", ["../outside", "/etc", "apps/../../x"])
def test_an_update_path_leaving_the_repository_is_refused(tmp_path: Path, path: str) -> None:
    docs = json.loads(json.dumps(DOCS))
    docs[-1]["spec"]["update"]["path"] = path
    code, _, err = validate(write(tmp_path, docs))
    assert code == 2 and "ImageUpdateAutomation flux-system/fleet.spec.update.path:" in err, err


# --- the per-object API the controller calls ------------------------------------------------------------


def resolved(*objs: dict[str, Any], cluster: bool = True) -> flux.Resolved:
    key = lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])  # noqa: E731
    secrets = {key(o): fs.secret_from_object(o) for o in objs if o["kind"] == "Secret"}
    accounts = {key(o): flux.pull_secret_names(o) for o in objs if o["kind"] == "ServiceAccount"}
    return flux.Resolved(secrets, accounts, cluster=cluster)


def test_references_name_every_secret_and_service_account_an_object_needs() -> None:
    repo = flux.references(DOCS[1])
    assert [(r.kind, r.name, r.field, r.purpose) for r in repo] == [
        ("Secret", "regcred", "spec.secretRef", Purpose.REGISTRY_AUTH),
        ("Secret", "registry-ca", "spec.certSecretRef", Purpose.REGISTRY_TLS),
        ("ServiceAccount", "image-puller", "spec.serviceAccountName", Purpose.PULL_SECRETS),
    ]
    auto = flux.references(DOCS[-1], DOCS[0])
    assert [(r.target, r.owner, r.field) for r in auto] == [
        ("Secret flux-system/signing-key", "ImageUpdateAutomation flux-system/fleet", "spec.git.commit.signingKey.secretRef"),
        ("Secret flux-system/git-auth", "GitRepository flux-system/fleet", "spec.secretRef"),
    ]


def test_in_the_cluster_a_missing_secret_is_an_error_naming_object_and_field() -> None:
    with pytest.raises(flux.FluxError) as info:
        flux.image_repository(DOCS[1], resolved(*SECRETS[2:]))
    (problem,) = info.value.problems
    assert (str(problem.subject), problem.field) == ("ImageRepository flux-system/podinfo", "spec.secretRef")
    assert str(problem) == "ImageRepository flux-system/podinfo.spec.secretRef: Secret flux-system/regcred not found"
    assert isinstance(info.value, ConfigError)


def test_the_repository_credentials_come_from_secret_ref_then_the_service_account_pull_secrets() -> None:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "image-puller", "namespace": "flux-system"},
          "imagePullSecrets": [{"name": "other"}, {"name": "sa-pull"}]}  # fmt: skip
    pulls = [
        {**dockerconfig("ghcr.io", "elsewhere", "x"), "metadata": {"name": "other", "namespace": "flux-system"}},
        {**dockerconfig("registry.example.com:5443", "sa-user", "sa-pw"),
         "metadata": {"name": "sa-pull", "namespace": "flux-system"}},
    ]
    spec = {k: v for k, v in DOCS[1]["spec"].items() if k != "secretRef"}
    repo = flux.image_repository({**DOCS[1], "spec": spec}, resolved(sa, *pulls, SECRETS[2]))
    assert repo.access.credentials == fs.RegistryCredentials("sa-user", "sa-pw")
    both = flux.image_repository(DOCS[1], resolved(sa, *pulls, *SECRETS[1:3]))
    assert both.access.credentials == fs.RegistryCredentials("puller", "s3cret-registry"), "secretRef comes first, as in Flux"


def test_pull_secret_credentials_takes_the_first_secret_holding_the_registry() -> None:
    a = fs.secret_from_object(dockerconfig("ghcr.io", "a", "1"))
    b = fs.secret_from_object(dockerconfig("*.example.com", "b", "2"))
    c = fs.secret_from_object(dockerconfig("registry.example.com", "c", "3"))
    assert flux.pull_secret_credentials([a, b, c], "registry.example.com") == fs.RegistryCredentials("b", "2")
    assert flux.pull_secret_credentials([a, c, b], "registry.example.com") == fs.RegistryCredentials("c", "3")
    assert flux.pull_secret_credentials([a], "quay.io") is None


def test_an_automation_translates_with_its_git_repository_template_and_signing_key() -> None:
    auto = flux.image_update_automation(DOCS[-1], DOCS[0], resolved(*SECRETS))
    assert (auto.url, auto.branch, auto.push_branch, auto.path) == ("https://git.example.com/acme/fleet.git", "main", None,
                                                                   "clusters/production")  # fmt: skip
    assert auto.signing_key is not None and auto.signing_key.type is fs.SigningKeyType.GPG
    assert auto.credentials is not None and auto.credentials.kind is fs.GitAuthKind.BASIC
    assert auto.warnings == () and auto.unresolved == ()
    assert auto.message([]).startswith("Automated image update\n\nAutomation name: flux-system/fleet\n")


# --- fuzz: any field of the realistic set (Secrets included) replaced by any kind of value ------------------------

VALUES = st.one_of(
    st.sampled_from(["", "x", "5m", "-1s", "../up", "{{ .Nope }}", "{{ template \"x\" }}", "gpg", "ssh", "Setters", "^1"]),
    st.integers(-2, 2),
    st.sampled_from([math.nan, True, False, None, 1.5]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.dictionaries(st.sampled_from(["name", "a", "branch", "range"]), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
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


def _set(docs: list[Any], path: tuple[Any, ...], value: Any) -> list[Any]:
    out = copy.deepcopy(docs)
    if len(path) == 1:
        out[path[0]] = value
        return out
    node = out[path[0]]
    for key in path[1:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutated_flux_set_validates_or_is_refused_never_raises(tmp_path: Path, data: st.DataObject) -> None:
    docs: list[Any] = copy.deepcopy(DOCS + SECRETS)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        docs = _set(docs, data.draw(st.sampled_from(_paths(docs)), label="path"), data.draw(VALUES, label="value"))
    code, _, err = validate(write(tmp_path, docs))
    assert code in (0, 2), err
    assert code == 0 or err.startswith("imagebot: error: "), err
    assert "Traceback" not in err
    objs = [d for d in docs if isinstance(d, dict)]
    for d in objs:  # the per-object API raises only FluxError
        try:
            kind = d.get("kind")
            if kind == "ImageRepository":
                flux.image_repository(d, resolved(*[s for s in objs if s.get("kind") == "Secret" and _ok(s)]))
            elif kind == "ImagePolicy":
                flux.image_policy(d)
            elif kind == "ImageUpdateAutomation":
                flux.image_update_automation(d, objs[0], flux.Resolved(cluster=True))
        except flux.FluxError:
            pass
        flux.references(d)


def _ok(s: dict[str, Any]) -> bool:
    try:
        fs.secret_from_object(s)
        return isinstance(s.get("metadata"), dict) and isinstance(s["metadata"].get("name"), str) and \
            isinstance(s["metadata"].get("namespace"), str)
    except (fs.SecretError, TypeError, AttributeError):
        return False


def _with_annotations(docs: list[Any], policy: str, annotations: dict[str, str]) -> list[Any]:
    out = copy.deepcopy(docs)
    for d in out:
        if d["kind"] == "ImagePolicy" and d["metadata"]["name"] == policy:
            d["metadata"]["annotations"] = annotations
    return out


def test_imagebots_annotations_on_a_policy_map_to_the_environment_guards_in_file_mode(tmp_path: Path) -> None:
    """The annotations `imagebot controller` reads are file mode's environment settings too (decide() applies both)."""
    docs = _with_annotations(DOCS, "podinfo-builds", {"imagebot.dev/promote-from": "podinfo", "imagebot.dev/soak": "24h"})
    docs = _with_annotations(docs, "minio", {"imagebot.dev/min-age": "2h", "imagebot.dev/allow-downgrade": "true",
                                             "imagebot.dev/hold": "incident 42"})  # fmt: skip
    f = write(tmp_path, docs)
    code, _, err = validate(f)
    assert code == 0, err
    cfg = load([f], environment=False)
    podinfo, minio = cfg.images
    builds = podinfo.environments[1]
    assert (builds.promote_from, builds.soak_seconds, builds.policy) == ("podinfo", 24 * 3600, None)
    (env,) = minio.environments
    assert (env.min_age_seconds, env.allow_downgrade, env.hold) == (7200, True, True)
    assert podinfo.environments[0].allow_downgrade is False, "the guard is on by default, as in the native config"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"imagebot.dev/soak": "1d"}, "metadata.annotations[imagebot.dev/soak]: invalid duration '1d'"),
        ({"imagebot.dev/promote-from": "nowhere"}, "ImagePolicy flux-system/nowhere is not among the loaded files"),
        ({"imagebot.dev/promote-from": "minio"}, "file mode promotes between ImagePolicies of one ImageRepository"),
        ({"imagebot.dev/min-agee": "1h"}, "metadata.annotations[imagebot.dev/min-agee]: unknown imagebot annotation"),
    ],
)
def test_a_bad_imagebot_annotation_is_refused_naming_it_as_the_controller_does(
    tmp_path: Path, annotations: dict[str, str], message: str
) -> None:
    code, out, err = validate(write(tmp_path, _with_annotations(DOCS, "podinfo-builds", annotations)))
    assert (code, out) == (2, ""), err
    assert message in err and "Traceback" not in err, err


def test_hold_tag_and_approve_are_warnings_in_file_mode(tmp_path: Path) -> None:
    docs = _with_annotations(DOCS, "podinfo-builds", {"imagebot.dev/promote-from": "podinfo", "imagebot.dev/approve": "5.0.3"})
    docs = _with_annotations(docs, "minio", {"imagebot.dev/hold": "", "imagebot.dev/hold-tag": "RELEASE.2024-01-01T00-00-00Z"})
    code, _, err = validate(write(tmp_path, docs))
    assert code == 0, err
    assert "imagebot.dev/hold-tag: honoured by `imagebot controller` only: file mode holds at the current tag" in err, err
    assert "imagebot.dev/approve: honoured by `imagebot controller` only" in err, err
