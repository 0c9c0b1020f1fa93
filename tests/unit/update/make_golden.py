"""Writes the golden cases (original/ + expected/ + request.json). Run once; the files are committed.

Kept beside the tests so a reader sees how the CRLF/BOM bytes were produced.
"""

import json
import pathlib

D = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
ROOT = pathlib.Path(__file__).parent / "testdata"


def case(name, request, files, problems=()):
    base = ROOT / name
    for sub in ("original", "expected"):
        for rel, (orig, exp) in files.items():
            p = base / sub / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes((orig if sub == "original" else exp).encode("utf-8"))
    (base / "request.json").write_text(json.dumps({"request": request, "problems": list(problems)}, indent=2) + "\n")


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: default
spec:
  template:
    spec:
      containers:
      - name: podinfo
        image: ghcr.io/stefanprodan/podinfo:5.0.0 # {{"$imagepolicy": "flux-system:podinfo"}}
      - name: tag-only
        image: ghcr.io/stefanprodan/podinfo:{tag} # {{"$imagepolicy": "flux-system:podinfo:tag"}}
"""
case(
    "setters-whole-and-tag",
    {"policies": {"flux-system:podinfo": "ghcr.io/stefanprodan/podinfo:5.2.1"}},
    {
        "deploy.yaml": (
            DEPLOY.format(tag="5.0.0"),
            DEPLOY.format(tag="5.0.0").replace(
                'podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo"}',
                'podinfo:5.2.1 # {"$imagepolicy": "flux-system:podinfo"}',
            ),
        )
    },
)
# the tag setter above sets the whole scalar to the tag, exactly as Flux does
p = ROOT / "setters-whole-and-tag" / "expected" / "deploy.yaml"
p.write_text(
    p.read_text().replace(
        'image: ghcr.io/stefanprodan/podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}',
        'image: 5.2.1 # {"$imagepolicy": "flux-system:podinfo:tag"}',
    )
)

HELM_MARKED = """image:
  repository: ghcr.io/org/app # {"$imagepolicy": "apps:app:name"}
  tag: %s # {"$imagepolicy": "apps:app:tag"}
  digest: %s # {"$imagepolicy": "apps:app:digest"}
full: %s # {"$imagepolicy": "apps:app"}
bare: %s #{"$imagepolicy":"app:tag"}
"""
case(
    "setters-name-tag-digest-bare",
    {"policies": {"apps:app": f"ghcr.io/org/app:1.4.0@{D2}"}},
    {
        "values.yaml": (
            HELM_MARKED % ("1.3.0", D, f"ghcr.io/org/app:1.3.0@{D}", "'1.3.0'"),
            HELM_MARKED % ("1.4.0", D2, f"ghcr.io/org/app:1.4.0@{D2}", "'1.4.0'"),
        )
    },
)

TYPED = """numbers:
  plain: 1 # {"$imagepolicy": "ns:n:tag"}
  single: '1' # {"$imagepolicy": "ns:n:tag"}
  double: "1" # {"$imagepolicy": "ns:n:tag"}
  word: v1 # {"$imagepolicy": "ns:n:tag"}
"""
case(
    "setters-quote-values-that-change-type",
    {"policies": {"ns:n": "reg.example.com/n:2.0"}},
    {
        "cm.yaml": (
            TYPED,
            TYPED.replace("plain: 1 ", 'plain: "2.0" ')
            .replace("'1'", "'2.0'")
            .replace('"1"', '"2.0"')
            .replace("word: v1", 'word: "2.0"'),
        )
    },
)

CRLF = '\ufeff# comment\r\nkind: Pod\r\nspec:\r\n  containers:\r\n  - image: "localhost:5000/app:1" # {"$imagepolicy": "ns:app"}\r\n    name: app\r\n'
case(
    "crlf-and-bom-preserved",
    {"policies": {"ns:app": "localhost:5000/app:2"}},
    {"pod.yaml": (CRLF, CRLF.replace('app:1"', 'app:2"'))},
)

BLOCKS = """# top comment

apiVersion: v1
kind: ConfigMap
data:
  script: |
    #!/bin/sh
    echo "image: nginx:1.0 # {\\"$imagepolicy\\": \\"ns:web\\"}"

  folded: >-
    a long
    folded text
  image: nginx:1.0    # {"$imagepolicy": "ns:web"}   

  # trailing comment
"""
case(
    "comments-and-block-scalars-kept",
    {"policies": {"ns:web": "nginx:1.1"}},
    {"cm.yaml": (BLOCKS, BLOCKS.replace("image: nginx:1.0    #", "image: nginx:1.1    #"))},
)

MULTI = (
    """---
kind: Pod
spec:
  containers: [{name: a, image: "nginx:1.0"}, {name: b, image: "redis:7"}, {name: e, image: nginx}]
---
# second
kind: Pod
spec:
  initContainers:
  - {name: c, image: 'docker.io/library/nginx:1.0'}
  ephemeralContainers:
  - name: d
    image: index.docker.io/library/nginx:0.9@%s
...
"""
    % D
)
case(
    "marker-free-multidoc-flow-and-spellings",
    {"images": {"nginx": "nginx:1.27"}},
    {
        "pods.yaml": (
            MULTI,
            MULTI.replace('"nginx:1.0"}', '"nginx:1.27"}')
            .replace("image: nginx}", 'image: "nginx:1.27"}')
            .replace("nginx:1.0'", "nginx:1.27'")
            .replace(f"nginx:0.9@{D}", "nginx:1.27"),
        )
    },
)

NOT_SUBSTRING = """kind: Pod
spec:
  containers:
  - image: nginx-exporter:1.0
  - image: my/nginx:1.0
  - image: ghcr.io/nginx:1.0
  - image: nginx:1.0
"""
case(
    "marker-free-exact-name-never-substring",
    {"images": {"docker.io/library/nginx": "nginx:2.0"}},
    {"pod.yaml": (NOT_SUBSTRING, NOT_SUBSTRING.replace("  - image: nginx:1.0\n", "  - image: nginx:2.0\n"))},
)

CR = """apiVersion: example.com/v1
kind: Widget
spec:
  jobTemplate:
    containers:
    - name: w
      image: registry.example.com:5000/team/widget:3.1.0
  image: registry.example.com:5000/team/widget:3.1.0
"""
case(
    "marker-free-custom-resources-and-ports",
    {"images": {"registry.example.com:5000/team/widget": f"registry.example.com:5000/team/widget:3.2.0@{D}"}},
    {"widget.yaml": (CR, CR.replace("widget:3.1.0", f"widget:3.2.0@{D}"))},
)

KUST = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deploy.yaml
images:
- name: ghcr.io/org/app
  newTag: 1.0.0 # prod
- name: nginx
  newName: registry.internal/mirror/nginx
  newTag: "1.25"
- name: ghcr.io/org/other
  newTag: v1
"""
KUST_EXP = KUST.replace("newTag: 1.0.0 # prod", "newTag: 1.1.0 # prod\n  digest: " + D).replace(
    'newTag: "1.25"', '"1.26"'.join(["newTag: ", ""])
)
case(
    "kustomize-images",
    {
        "images": {
            "ghcr.io/org/app": f"ghcr.io/org/app:1.1.0@{D}",
            "registry.internal/mirror/nginx": "registry.internal/mirror/nginx:1.26",
        }
    },
    {
        "kustomization.yaml": (KUST, KUST_EXP),
        "overlay/Kustomization": (
            "images:\n  - name: ghcr.io/org/app\n    newTag: 0.9.0\n",
            "images:\n  - name: ghcr.io/org/app\n    newTag: 1.1.0\n    digest: " + D + "\n",
        ),
    },
)

HELM = """replicaCount: 1
image:
  registry: ghcr.io
  repository: org/app
  tag: 1.0   # unquoted on purpose
  pullPolicy: IfNotPresent
sidecar:
  image: ghcr.io/org/app:1.0
other:
  image:
    repository: ghcr.io/org/app-other
    tag: "1.0"
"""
case(
    "helm-values",
    {"images": {"ghcr.io/org/app": "ghcr.io/org/app:1.1"}},
    {
        "values.yaml": (
            HELM,
            HELM.replace("tag: 1.0   #", 'tag: "1.1"   #').replace("image: ghcr.io/org/app:1.0", "image: ghcr.io/org/app:1.1"),
        )
    },
)

TEMPLATE = """apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
      - image: {{ .Values.image }} # {"$imagepolicy": "ns:app"}
      - image: ghcr.io/org/app:1.0 # {"$imagepolicy": "ns:app"}
"""
ANCHOR = """base: &img ghcr.io/org/app:1.0 # {"$imagepolicy": "ns:app"}
use: *img
other: ghcr.io/org/app:1.0 # {"$imagepolicy": "ns:app"}
"""
UNTOUCHED = "kind: Pod\nspec:\n  containers:\n  - image: busybox:1.36\n"
case(
    "templates-anchors-and-untouched-files",
    {"policies": {"ns:app": "ghcr.io/org/app:2.0"}},
    {
        "chart/templates/deploy.yaml": (TEMPLATE, TEMPLATE),
        "anchors.yaml": (ANCHOR, ANCHOR.replace("other: ghcr.io/org/app:1.0", "other: ghcr.io/org/app:2.0")),
        "untouched.yaml": (UNTOUCHED, UNTOUCHED),
        "notes.txt": ('image: x # {"$imagepolicy": "ns:app"}\n', 'image: x # {"$imagepolicy": "ns:app"}\n'),
    },
    problems=["template", "aliased"],
)
