"""Runtime: configuration errors with file/line/field, Flux mapping, guards with an injected clock,
webhook signatures and payloads, state across restarts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.config.load import load, parse_duration
from imagebot.config.model import Environment, Target
from imagebot.errors import ConfigError
from imagebot.gitops.writer import Mode
from imagebot.policy import PolicyKind, PolicySpec
from imagebot.runtime import webhooks
from imagebot.runtime.decide import Current, decide
from imagebot.runtime.state import InstanceLock, RuntimeState

CONFIG = Path(__file__).resolve().parents[3] / "config"
T = Target("config")


def env(**kw) -> Environment:  # type: ignore[no-untyped-def]
    base = {"name": "prod", "policy": PolicySpec(PolicyKind.SEMVER, "^1"), "target": T}
    return Environment(**{**base, **kw})


def test_shipped_examples_are_valid() -> None:
    # the example names files of a deployment (/etc/imagebot/ca.crt): their existence is not checked here
    cfg = load([CONFIG / "imagebot.yaml"], environment=False)
    prod = cfg.images[0].environments[2]
    assert (prod.promote_from, prod.soak_seconds, prod.digest, prod.target.mode) == ("staging", 86400, True, Mode.PULL_REQUEST)
    flux = load([CONFIG / "flux" / "automation.yaml"])
    (image,) = flux.images
    (e,) = image.environments
    assert image.repository.canonical_name == "ghcr.io/stefanprodan/podinfo"
    assert e.setter == "flux-system:podinfo" and e.digest and e.policy is not None and e.policy.argument == "6.x"
    assert e.policy.excludes == (r"^.*\.sig$", "^.*-rc.*$")
    assert e.target.path == "clusters/production" and e.target.mode is Mode.PUSH
    assert flux.git[0].url == "https://github.com/acme/fleet.git" and flux.git[0].author_name == "fluxcdbot"


def test_validation_reports_every_error_with_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("""apiVersion: imagebot.dev/v1
kind: Config
interval: soon
git:
  - name: config
    url: https://example.com/c.git
images:
  - name: app
    repository: ghcr.io/Org/app
    environments:
      prod:
        policy: {semvar: "^1"}
        target: {git: nope}
      dev:
        policy: {semver: ">=1 <<2"}
        target: {git: config, mode: sideways}
        colour: blue
""")
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(bad)], out=out, err=err) == 2
    text = err.getvalue()
    for expected in [
        f"{bad}:3: config.interval: invalid duration 'soon'",
        f"{bad}:9: images[0].repository: invalid repository path",
        f"{bad}:12: images[0].environments.prod.policy.semvar: unknown key",
        f"{bad}:13: images[0].environments.prod.target.git: no git entry named 'nope'",
        f"{bad}:15: images[0].environments.dev.policy.semver: invalid semver range",
        f"{bad}:16: images[0].environments.dev.target.mode: 'sideways' is not one of the allowed values: "
        "push, push-branch, pull-request",
        f"{bad}:17: images[0].environments.dev.colour: unknown key",
    ]:
        assert expected in text, f"missing {expected!r} in:\n{text}"


def test_flux_fields_that_need_the_cluster_are_warnings_and_a_template_is_checked(tmp_path: Path) -> None:
    f = tmp_path / "flux.yaml"
    text = (
        (CONFIG / "flux" / "automation.yaml")
        .read_text()
        .replace(
            "      author: {name: fluxcdbot",
            "      messageTemplate: '{{range .Changed.Changes}}x{{end}}'\n      author: {name: fluxcdbot",
        )
    )
    f.write_text(text.replace("  interval: 5m\n  exclusionList", "  interval: 5m\n  secretRef: {name: regcred}\n  exclusionList"))
    cfg = load([f])
    assert cfg.git[0].flux is not None and cfg.git[0].flux.message_template == "{{range .Changed.Changes}}x{{end}}"
    (warning,) = cfg.warnings
    assert "ImageRepository flux-system/podinfo.spec.secretRef: Secret flux-system/regcred" in warning
    f.write_text(f.read_text().replace(".Changed.Changes", ".Changed.Change"))
    with pytest.raises(ConfigError) as info:
        load([f])
    assert "ImageUpdateAutomation flux-system/fleet.spec.git.commit.messageTemplate: messageTemplate:1:" in str(info.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (12, 12)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


TAGS = ["1.0.0", "1.1.0", "1.2.0"]
SEEN = {"1.0.0": 0.0, "1.1.0": 1000.0, "1.2.0": 9000.0}


def test_min_age_waits_for_young_tags_and_says_how_long() -> None:
    d = decide(env(min_age_seconds=3600), TAGS, SEEN, now=10_000, current=None, peers={})
    assert d.tag == "1.1.0" and d.pending == "1.2.0" and d.remaining == pytest.approx(2600)
    assert decide(env(min_age_seconds=3600), TAGS, SEEN, now=13_000, current=None, peers={}).tag == "1.2.0"


def test_downgrade_guard_and_hold() -> None:
    current = Current("1.5.0", None, 0)
    assert decide(env(), TAGS, SEEN, 10_000, current, {}).tag is None
    assert "downgrade guard" in decide(env(), TAGS, SEEN, 10_000, current, {}).reason
    assert decide(env(allow_downgrade=True), TAGS, SEEN, 10_000, current, {}).tag == "1.2.0"
    assert decide(env(hold=True), TAGS, SEEN, 10_000, None, {}).reason.startswith("on hold")


def test_promotion_takes_exactly_the_source_digest_after_the_soak() -> None:
    prod = env(policy=None, promote_from="staging", soak_seconds=24 * 3600)
    staging = Current("1.2.0", "sha256:" + "a" * 64, since=1000)
    early = decide(prod, TAGS, SEEN, now=1000 + 3600, current=None, peers={"staging": staging})
    assert early.tag is None and early.pending == "1.2.0" and early.remaining == pytest.approx(23 * 3600)
    later = decide(prod, TAGS, SEEN, now=1000 + 25 * 3600, current=None, peers={"staging": staging})
    assert (later.tag, later.digest) == ("1.2.0", "sha256:" + "a" * 64)
    done = decide(prod, TAGS, SEEN, now=1000 + 26 * 3600, current=Current("1.2.0", staging.digest, 0), peers={"staging": staging})
    assert done.tag is None


@pytest.mark.parametrize(
    ("payload", "repos"),
    [
        (
            {
                "events": [
                    {"action": "push", "target": {"repository": "demo/app", "tag": "1"}, "request": {"host": "reg:5000"}},
                    {"action": "pull", "target": {"repository": "demo/other"}},
                ]
            },
            ["reg:5000/demo/app"],
        ),
        ({"push_data": {"tag": "1"}, "repository": {"repo_name": "acme/app"}}, ["docker.io/acme/app"]),
        (
            {"action": "published", "package": {"name": "app", "package_type": "container", "owner": {"login": "Acme"}}},
            ["ghcr.io/acme/app"],
        ),
        (
            {"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"resource_url": "harbor.example.com/proj/app:1.0"}]}},
            ["harbor.example.com/proj/app"],
        ),
        ({"image": "ghcr.io/acme/app", "tag": "1.2.3"}, ["ghcr.io/acme/app"]),
        ({"something": "else"}, []),
    ],
    ids=["distribution", "docker_hub", "ghcr", "harbor", "generic", "unknown"],
)
def test_webhook_payloads_name_repositories(payload: dict, repos: list[str]) -> None:  # type: ignore[type-arg]
    assert webhooks.repositories(json.dumps(payload).encode()) == repos


def test_webhook_signature_required_and_checked() -> None:
    body = b'{"image": "ghcr.io/acme/app"}'
    assert webhooks.verify("s3cret", body, webhooks.sign("s3cret", body))
    assert not webhooks.verify("s3cret", body, None)
    assert not webhooks.verify("s3cret", body, webhooks.sign("other", body))
    assert not webhooks.verify("s3cret", body + b" ", webhooks.sign("s3cret", body))
    assert not webhooks.verify("", body, webhooks.sign("", body)), "no secret configured: nothing is accepted"


def test_state_survives_restart_and_second_instance_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    RuntimeState(db).record("app", "prod", reason="pushed", pending=None, now=5.0, tag="1.2.0", commit="abc")
    again = RuntimeState(db)
    assert again.current("app", "prod") == Current("1.2.0", None, 5.0)
    lock = InstanceLock(db)
    lock.acquire()
    try:
        with pytest.raises(ConfigError, match="another imagebot instance"):
            InstanceLock(db).acquire()
    finally:
        lock.release()


def test_debounce_batches_webhook_events_into_one_pass() -> None:
    import threading
    import time as _time

    from imagebot.runtime.serve import Service

    class FakeRunner:
        def __init__(self) -> None:
            self.passes: list[list[str] | None] = []

        def run_pass(self, only=None, received=None):  # type: ignore[no-untyped-def]
            self.passes.append(sorted(only) if only is not None else None)

        def clock(self) -> float:
            return 0.0

        def until_next(self, now: float) -> float:
            return 3600.0

    runner = FakeRunner()
    service = Service(runner, "s", debounce=1.0)  # type: ignore[arg-type]
    loop = threading.Thread(target=service.loop, args=(3600.0,), daemon=True)
    loop.start()
    service.ready.wait(5)
    runner.passes.clear()
    t0 = _time.monotonic()
    for repo in ["r/a", "r/b", "r/a"]:
        service.enqueue([repo])
        _time.sleep(0.05)
    assert runner.passes == [], "no pass before the window closes"
    deadline = _time.monotonic() + 10
    while not runner.passes and _time.monotonic() < deadline:
        _time.sleep(0.02)
    assert _time.monotonic() - t0 >= 1.0, "the pass waited for the whole window"
    service.stop.set()
    service.enqueue([])
    assert runner.passes == [["r/a", "r/b"]], "events within the debounce window become one pass"


def test_status_command_shows_current_pending_and_why(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""apiVersion: imagebot.dev/v1
kind: Config
stateFile: {tmp_path}/state.db
git: [{{name: c, url: "https://example.com/c.git"}}]
images:
  - name: app
    repository: ghcr.io/acme/app
    environments:
      prod: {{policy: {{semver: "^1"}}, target: {{git: c}}}}
""")
    state = RuntimeState(tmp_path / "state.db")
    state.record("app", "prod", reason="pushed", pending=None, now=1.0, tag="1.2.0", commit="0123456789abcdef")
    state.record("app", "prod", reason="1.3.0 soaking", pending="1.3.0", now=2.0)
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--config", str(cfg)], out=out, err=err) == 0, err.getvalue()
    line = out.getvalue()
    assert "app prod: current 1.2.0" in line and "pending 1.3.0" in line and "(1.3.0 soaking)" in line and "0123456789ab" in line
    out = io.StringIO()
    assert main(["status", "--config", str(cfg), "--json"], out=out, err=err) == 0
    assert json.loads(out.getvalue())[0]["tag"] == "1.2.0"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Length": "5"}, b"hello", 200),
        ({}, b"", 200),
        ({"Content-Length": str((1 << 20) + 1)}, b"x" * 64, 413),
        ({"Content-Length": "-3"}, b"", 400),
        ({"Content-Length": "many"}, b"", 400),
        ({"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n", 411),
    ],
)
def test_webhook_bodies_are_bounded_and_a_refusal_closes_the_connection(
    headers: dict[str, str], body: bytes, status: int
) -> None:
    import http.client

    from gitopskit import httpd

    class Echo(httpd.Handler):
        def do_POST(self) -> None:
            got = self.body()
            if got is not None:
                self.send(200, got)

    server = httpd.start("127.0.0.1:0", Echo)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.putrequest("POST", "/", skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        answer = r.read()
        assert r.status == status, answer
        if status == 200:
            assert answer == body, "the whole body, nothing more"
        assert (r.getheader("Connection") == "close") is (status != 200), "unread bytes must not become a request"
        conn.close()
    finally:
        server.shutdown()


BODY = b'{"image": "ghcr.io/acme/app", "tag": "1.2.3"}'


@pytest.mark.parametrize(
    ("headers", "query", "ok"),
    [
        ({"X-Imagebot-Signature-256": webhooks.sign("s3cret", BODY)}, "", True),
        ({"X-Hub-Signature-256": webhooks.sign("s3cret", BODY)}, "", True),  # GitHub (GHCR package events)
        ({"Authorization": "Bearer s3cret"}, "", True),  # Docker distribution notifications, Harbor
        ({"Authorization": "s3cret"}, "", True),  # Harbor's "Auth Header" sent verbatim
        ({"X-Gitlab-Token": "s3cret"}, "", True),  # GitLab
        ({}, "token=s3cret", True),  # Docker Hub: only the URL can be set
        ({}, "", False),
        ({"Authorization": "Bearer wrong"}, "", False),
        ({}, "token=wrong&token=", False),
        ({"X-Hub-Signature-256": webhooks.sign("other", BODY), "Authorization": "Bearer s3cret"}, "", False),
        ({"Authorization": "Basic czNjcmV0"}, "", False),
    ],
    ids=[
        "imagebot-hmac", "github-hmac", "bearer", "bare-auth-header", "gitlab-token", "url-token",
        "nothing", "wrong-bearer", "wrong-url-token", "a-wrong-signature-is-not-rescued-by-a-token", "basic-is-not-a-token",
    ],
)  # fmt: skip
def test_webhook_senders_that_cannot_sign_present_the_secret(headers: dict[str, str], query: str, ok: bool) -> None:
    assert webhooks.authorized("s3cret", BODY, headers, query) is ok
    assert webhooks.authorized("", BODY, headers, query) is False, "no secret configured: nothing is accepted"


def test_an_operators_hold_stops_every_update_and_says_who_since_when_and_why() -> None:
    from imagebot.runtime.decide import Hold, Overrides

    held = Overrides(hold=Hold("alice", "incident 42", since=0.0))
    d = decide(env(), TAGS, SEEN, 10_000, None, {}, held)
    assert (d.tag, d.reason) == (None, "on hold by alice since 1970-01-01 00:00 UTC: incident 42")
    prod = env(policy=None, promote_from="staging", soak_seconds=0)
    assert decide(prod, TAGS, SEEN, 10_000, None, {"staging": Current("1.2.0", None, 0)}, held).tag is None
    assert decide(env(), TAGS, SEEN, 10_000, None, {}, Overrides()).tag == "1.2.0", "no hold: updates as usual"


def test_an_approval_cuts_the_soak_short_for_exactly_its_tag() -> None:
    from imagebot.runtime.decide import Approval, Overrides

    prod = env(policy=None, promote_from="staging", soak_seconds=24 * 3600)
    staging = Current("1.2.0", "sha256:" + "a" * 64, since=1000)
    ok = decide(prod, TAGS, SEEN, 2000, None, {"staging": staging}, Overrides(approval=Approval("1.2.0", "bob", 1500)))
    assert (ok.tag, ok.digest, ok.reason) == ("1.2.0", staging.digest, "promoted from staging: approved early by bob")
    other = decide(prod, TAGS, SEEN, 2000, None, {"staging": staging}, Overrides(approval=Approval("1.1.0", "bob", 1500)))
    assert other.tag is None and other.pending == "1.2.0", "an approval of another tag does not promote this one"


@pytest.mark.parametrize(
    "spec",
    [
        PolicySpec(PolicyKind.SEMVER, "^1"),
        PolicySpec(PolicyKind.SEMVER, "~1.2"),
        PolicySpec(PolicyKind.SEMVER, ">=1.0.0-0 <2"),
        PolicySpec(PolicyKind.SEMVER, "^1", pattern=r"^v(?P<v>.*)-linux$", extract="$v"),
    ],
)
def test_passed_over_lists_exactly_the_refused_tags_newer_than_the_winner(spec: PolicySpec) -> None:
    from imagebot.policy import build
    from imagebot.policy.base import Outcome
    from imagebot.policy.semver import parse_tag
    from imagebot.runtime.why import policy_passed_over

    tags = [f"{m}.{n}.{p}{s}" for m in (0, 1, 2) for n in (1, 2, 3) for p in (0, 5) for s in ("", "-rc.1", "-debug")]
    tags += [f"v{t}-linux" for t in tags] + ["latest", "sha256-" + "a" * 64, "1.2.5.sig", "1.9.0", "1.9.0"]
    policy = build(spec)
    winner = policy.select(tags)
    assert winner is not None
    # the definition, over every tag: the refused ones whose version ranks above the winner's, newest first
    verdicts = policy.explain(tags).verdicts
    top = parse_tag(next(v.value for v in verdicts if v.tag == winner))
    refused = (Outcome.EXCLUDED, Outcome.NO_MATCH, Outcome.OUT_OF_RANGE, Outcome.INVALID)
    newer = [(k, v) for v in verdicts if v.outcome in refused and (k := parse_tag(v.value)) is not None and top and k > top]
    expected = [(v.tag, v.reason) for _, v in sorted(newer, key=lambda kv: kv[0], reverse=True)]
    got = [(p.tag, p.reason) for p in policy_passed_over(env(policy=spec), tags, winner)]
    assert got == expected and (spec.pattern is not None or got)
