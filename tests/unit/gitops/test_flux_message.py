"""messageTemplate data as Flux builds it, from the update engine's changes: file (relative to the update path), the
object's kind/name/namespace/apiVersion, old and new values and the setter as the marker names it. Golden tests are
Flux's own (image-automation-controller's TestImageUpdateAutomationReconciler_commitMessage) and its docs' example."""

from __future__ import annotations

from imagebot import refs
from imagebot.gitops.gotemplate import GoMessage
from imagebot.gitops.message import change_records
from imagebot.update import EditRequest, edit_text
from imagebot.update.model import Change
from tests.unit.gitops.test_gotemplate import FLUX_V1_EXAMPLE

# Flux's internal/controller/testdata/appconfig/deploy.yaml, its SETTER_SITE replaced by the marker as Flux's test does
DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: test
spec:
  template:
    spec:
      containers:
      - name: hello
        image: helloworld:1.0.0 # {"$imagepolicy": "image-auto-test:policy"}
"""

# Flux's testCommitTemplate and testCommitMessageFmt
TEMPLATE_RESULT = """Commit summary

Automation: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $_ := .Changed.Objects -}}
{{ if eq $resource.Kind "Deployment" -}}
- {{ $resource.Kind | lower }} {{ $resource.Name | lower }}
{{ else -}}
- {{ $resource.Kind }} {{ $resource.Name }}
{{ end -}}
{{ end -}}

Images:
{{ range .Changed.Changes -}}
{{ if .Setter -}}
- {{.NewValue}} ({{.Setter}})
{{ end -}}
{{ end -}}
"""
EXPECTED_RESULT = """Commit summary

Automation: image-auto-test/update-test

Files:
- deploy.yaml
Objects:
- deployment test
Images:
- helloworld:v1.0.0 (image-auto-test:policy)
"""
TEMPLATE_V2 = """Commit summary with ResultV2

Automation: {{ .AutomationObject }}

{{ range $filename, $objchange := .Changed.FileChanges -}}
- File: {{ $filename }}
{{- range $obj, $changes := $objchange }}
  - Object: {{ $obj.Kind }}/{{ $obj.Namespace }}/{{ $obj.Name }}
    Changes:
{{- range $_ , $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }} ({{ $change.Setter }})
{{ end -}}
{{ end -}}
{{ end -}}
"""
EXPECTED_V2 = """Commit summary with ResultV2

Automation: image-auto-test/update-test

- File: deploy.yaml
  - Object: Deployment//test
    Changes:
    - helloworld:1.0.0 -> helloworld:v1.0.0 (image-auto-test:policy)
"""


def changes(files: dict[str, str], policies: dict[str, str]) -> tuple[tuple[Change, ...], dict[str, refs.ImageRef]]:
    request = EditRequest(policies={k: refs.parse(v) for k, v in policies.items()})
    out = tuple(c for f, text in files.items() for c in edit_text(f, text, request).changes)
    return out, request.policies


def message(template: str, files: dict[str, str], policies: dict[str, str], api: str = "v1") -> str:
    cs, requested = changes(files, policies)
    return GoMessage("image-auto-test", "update-test", template, (), api).render(change_records(cs, requested))


def test_flux_commit_message_golden_with_the_result_template() -> None:
    assert message(TEMPLATE_RESULT, {"deploy.yaml": DEPLOY}, {"image-auto-test:policy": "helloworld:v1.0.0"}) == EXPECTED_RESULT


def test_flux_commit_message_golden_with_the_result_v2_template() -> None:
    assert message(TEMPLATE_V2, {"deploy.yaml": DEPLOY}, {"image-auto-test:policy": "helloworld:v1.0.0"}) == EXPECTED_V2


APPS = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: apps
spec:
  template:
    spec:
      containers:
      - name: podinfo
        image: ghcr.io/stefanprodan/podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo"}
      - name: sidecar
        image: ghcr.io/org/sidecar:1.0.0
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: cleanup
  namespace: apps
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: c
            image: ghcr.io/org/sidecar:1.0.0 # {"$imagepolicy": "flux-system:sidecar"}
"""
KUSTOMIZATION = """images:
- name: podinfo
  newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
"""


def test_records_carry_file_object_and_the_setter_as_the_marker_names_it() -> None:
    cs, requested = changes(
        {"apps/podinfo.yaml": APPS, "kustomization.yaml": KUSTOMIZATION},
        {"flux-system:podinfo": "ghcr.io/stefanprodan/podinfo:5.0.3", "flux-system:sidecar": "ghcr.io/org/sidecar:1.1.0"},
    )
    records = change_records(cs, requested)
    assert [(r.file, r.object.kind, r.object.name, r.object.namespace, r.object.api_version, r.old, r.new, r.setter)
            for r in records] == [
        ("apps/podinfo.yaml", "Deployment", "podinfo", "apps", "apps/v1", "ghcr.io/stefanprodan/podinfo:5.0.0",
         "ghcr.io/stefanprodan/podinfo:5.0.3", "flux-system:podinfo"),
        ("apps/podinfo.yaml", "CronJob", "cleanup", "apps", "batch/v1", "ghcr.io/org/sidecar:1.0.0", "ghcr.io/org/sidecar:1.1.0",
         "flux-system:sidecar"),
        ("kustomization.yaml", "", "", "", "", "5.0.0", "5.0.3", "flux-system:podinfo:tag"),
    ]  # fmt: skip
    assert {r.image for r in records} == {"ghcr.io/stefanprodan/podinfo:5.0.3", "ghcr.io/org/sidecar:1.1.0"}


def test_the_docs_v1_example_over_real_changes() -> None:
    text = message(
        FLUX_V1_EXAMPLE,
        {"apps/podinfo.yaml": APPS, "kustomization.yaml": KUSTOMIZATION},
        {"flux-system:podinfo": "ghcr.io/stefanprodan/podinfo:5.0.3", "flux-system:sidecar": "ghcr.io/org/sidecar:1.1.0"},
    )
    # Go ranges .Changed.Objects (a map keyed by ObjectIdentifier) in the order of its fields: APIVersion first
    assert text == """Automated image update

Automation name: image-auto-test/update-test

Files:
- apps/podinfo.yaml
- kustomization.yaml
Objects:
-{SP}{SP}
  Changes:
    - 5.0.0 -> 5.0.3
- Deployment podinfo
  Changes:
    - ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
- CronJob cleanup
  Changes:
    - ghcr.io/org/sidecar:1.0.0 -> ghcr.io/org/sidecar:1.1.0
""".format(SP=" ")  # the kustomization has no kind or name: "- " + "" + " " + ""


def test_the_deprecated_updated_images_of_v1beta2() -> None:
    text = message(
        "{{ range .Updated.Images }}{{ println . }}{{ end }}",
        {"apps/podinfo.yaml": APPS},
        {"flux-system:podinfo": "ghcr.io/stefanprodan/podinfo:5.0.3", "flux-system:sidecar": "ghcr.io/org/sidecar:1.1.0"},
        api="v1beta2",
    )
    assert text == "ghcr.io/stefanprodan/podinfo:5.0.3\nghcr.io/org/sidecar:1.1.0\n"
