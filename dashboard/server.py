"""The dashboard's HTTP side: pages (server-rendered, Jinja2 with autoescape), static assets from the package,
server-sent events, login and the actions. Served by gitopskit.httpd (bounded pool, deadlines, size caps);
event streams are handed to one broadcaster thread (dashboard/sse.py) so open pages hold no worker.

Every response carries a Content-Security-Policy with no inline script or style, frame-ancestors 'none' (and
X-Frame-Options), nosniff and Referrer-Policy; pages are not cached.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from kubernetes.client.exceptions import ApiException

from dashboard import views as V
from dashboard.auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Auth, Who, new_browser_id
from dashboard.cluster import APP_KINDS, ClusterView
from dashboard.images import ActionRefused, ImageEnv, ImageState, StateUnreadable
from dashboard.sse import Broadcaster, frame
from dashboard.throttle import Network, Throttled, client_address
from gitopskit import httpd
from gitopskit.informer import Key
from gitopskit.kube import request_json
from reconciler.apps import app_key

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"  # what `reconciler reconcile` and `flux reconcile` set
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on every form POST, which the
    # origin check must refuse (a sandboxed or data: page sends it too) — so no action or login could ever pass
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
ACTIONS = ("sync", "suspend", "resume")
IMAGE_ACTIONS = ("hold", "release", "approve")  # imagebot's operator overrides, per image × environment
ROWS_PER_BURST = 50  # app rows pushed one by one per publish; more, and the list pages fetch their rows again
# An event stream's topics: a page asks for two or three ("status apps", "status app:KIND/NS/NAME"). Bounded, as each
# of up to 2,000 open streams keeps its set: 32 KiB of tiny topics per stream had 400 anonymous streams hold 250 MB.
STREAM_TOPICS = ("status", "apps", "images", "activity")
MAX_STREAM_TOPICS = 8


def _fmt_time(value: Any) -> str:
    """RFC 3339 or epoch seconds → 'YYYY-MM-DD HH:MM:SS UTC' (the page's script adds 'n s ago')."""
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value)) if value else ""
    text = str(value or "")
    return text.replace("T", " ").replace("Z", " UTC") if text else ""


def _iso(value: Any) -> str:
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value)) if value else ""
    return str(value or "")


def _short_rev(rev: str) -> str:
    """``main@sha1:0123456789abcdef…`` → ``main@0123456789ab``."""
    ref, _, sha = rev.rpartition("@")
    sha = sha.removeprefix("sha1:")
    return f"{ref + '@' if ref else ''}{sha[:12]}" if sha else rev


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
    )
    env.filters["when"] = _fmt_time
    env.filters["iso"] = _iso
    env.filters["rev"] = _short_rev
    env.globals["app_href"] = V.app_href
    return env


@dataclass
class Status:
    stale: bool = False
    text: str = ""
    controllers: list[str] = field(default_factory=list)


class Dashboard:
    """The model behind the pages: reads the cluster view and imagebot's state, renders, publishes changes."""

    def __init__(
        self,
        view: ClusterView,
        images: ImageState | None,
        auth: Auth,
        broadcaster: Broadcaster | None = None,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.view = view
        self.trusted_proxies = trusted_proxies  # whose X-Forwarded-For names the client (the login throttle's key)
        self.images = images
        self.auth = auth
        self.sse = broadcaster or Broadcaster()
        self.env = templates()
        self.status = Status()
        self._pending: dict[tuple[str, str], Any] = {}
        self._plock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._tracking: dict[tuple[str, str], str] = {}  # (namespace, tracking key) → app key
        view.on_change = self.changed
        self._static = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file()}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        threading.Thread(target=self._publisher, name="publish", daemon=True).start()
        threading.Thread(target=self._watch_status, name="freshness", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.sse.stop()

    # ------------------------------------------------------------------ changes → server-sent events
    def changed(self, topic: str, key: str) -> None:
        """From informer threads: remember what changed; the publisher thread coalesces and sends."""
        with self._plock:
            self._pending[(topic, key)] = True
        self._wake.set()

    def _publisher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            time.sleep(0.03)  # a burst of changes (one status write touches several informers) goes out as one
            with self._plock:
                pending, self._pending = self._pending, {}
            try:
                self._publish(pending)
            except Exception:  # never lose the thread that makes pages live
                log.exception("publishing changes")

    def _publish(self, pending: dict[tuple[str, str], Any]) -> None:
        details: set[str] = set()
        activity = False
        burst = sum(1 for topic, _ in pending if topic == "app") > ROWS_PER_BURST
        if burst:  # many apps at once (a cold start, a resync): the list pages reload once instead of N rows
            self.sse.publish("apps", "changed", {})
        for topic, key in pending:
            if topic == "app" and burst:
                kind, ns, name = key.split("/", 2)
                self._tracking[(ns, app_key(kind, ns, name))] = key  # its objects' and Events' changes find it
                details.add(key)
                activity = True
            elif topic == "app":
                kind, ns, name = key.split("/", 2)
                obj = self.view.app(kind, ns, name)
                if obj is None:
                    continue
                row = V.app_row(obj, self._repos())
                self._tracking[(ns, row.tracking)] = key
                html = self.env.get_template("_row.html").render(r=row, now=time.time())
                self.sse.publish("apps", "row", {"key": key, "html": html})
                details.add(key)
                activity = True
            elif topic == "app-deleted":
                self.sse.publish("apps", "gone", {"key": key})
                details.add(key)
            elif topic in ("inventory", "managed"):
                ns, _, tracking = key.rpartition("/") if topic == "inventory" else ("", "", key)
                for (tns, t), app in list(self._tracking.items()):
                    if t == tracking and (not ns or tns == ns):
                        details.add(app)
            elif topic == "event":
                activity = True
                details.update(self._event_apps(key))
            elif topic in ("image", "images"):
                self.sse.publish("images", "changed", {})
                activity = True
            elif topic == "repo":
                self.sse.publish("apps", "changed", {})
        for key in details:
            self.sse.publish(f"app:{key}", "changed", {"key": key})
        if activity:
            self.sse.publish("activity", "changed", {})

    def _event_apps(self, key: str) -> set[str]:
        ns, _, name = key.partition("/")
        found: set[str] = set()
        for inf in self.view.events:
            ev = inf.get(Key(ns, name))
            if ev is None:
                continue
            inv = ev.get("involvedObject") or {}
            if inv.get("kind") == "ConfigMap" and str(inv.get("name", "")).startswith("reconciler-"):
                app = self._tracking.get((ns, str(inv["name"])[len("reconciler-"):]))
                if app:
                    found.add(app)
            elif inv.get("kind") in APP_KINDS:
                found.add(f"{inv['kind']}/{inv.get('namespace') or ns}/{inv.get('name', '')}")
        return found

    def _watch_status(self) -> None:
        state_version = self.images.version() if self.images else (0.0, 0)
        last: tuple[bool, str, tuple[str, ...]] | None = None
        while not self._stop.wait(0.25):
            try:
                if self.images is not None:
                    v = self.images.version()
                    if v != state_version:
                        state_version = v
                        self.changed("images", "state")
                st = self.freshness()
                self.status = st  # what a page rendered now shows; open pages hear of it when it changes
                now = (st.stale, st.text, tuple(c.partition(": ")[0] for c in st.controllers))  # not the ages
                if now != last:
                    last = now
                    self.sse.publish("status", "status", {"stale": st.stale, "text": st.text, "controllers": st.controllers})
            except Exception:
                log.exception("freshness")

    def freshness(self) -> Status:
        stale, _ = self.view.stale()
        now = time.time()
        controllers = []
        bad = False
        for lease in self.view.all_leases():
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            name = str(meta.get("name") or "")
            if not name.startswith(("reconciler-controller", "imagebot-leader", "imagebot-controller")):
                continue
            renewed = _epoch(str(spec.get("renewTime") or ""))
            duration = float(spec.get("leaseDurationSeconds") or 15)
            age = now - renewed if renewed else float("inf")
            late = age > duration
            bad = bad or late
            ago = f"{int(age)} s ago" if age != float("inf") else "never"
            holder = spec.get("holderIdentity") or "no holder"
            controllers.append(f"{name} ({holder}): renewed {ago}{' — NOT RUNNING?' if late else ''}")
        if stale:
            text = "STALE: the dashboard has lost its watch on the API server; what you see may be old"
        elif bad:
            text = "STALE: a controller has not renewed its lease; the state shown is not being acted on"
        else:
            text = "live"
        return Status(stale or bad, text, sorted(controllers))

    # ------------------------------------------------------------------ reads
    def _repos(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for inf in self.view.repos:
            for o in inf.objects():
                m = o.get("metadata") or {}
                out[(str(m.get("namespace") or ""), str(m.get("name") or ""))] = o
        return out

    def rows(self) -> list[V.AppRow]:
        repos = self._repos()
        out = []
        for obj in self.view.app_objects():
            r = V.app_row(obj, repos)
            self._tracking[(r.namespace, r.tracking)] = r.key
            out.append(r)
        return out

    def image_rows(self) -> tuple[list[ImageEnv], str]:
        if self.images is None:
            return [], "no imagebot state given (dashboard serve --imagebot-state PATH or --imagebot-config FILE)"
        try:
            return self.images.rows(time.time()), ""
        except StateUnreadable as exc:
            return [], str(exc)

    def render(self, name: str, **ctx: Any) -> bytes:
        return self.env.get_template(name).render(status=self.status, now=time.time(), **ctx).encode()

    def render_live(self, name: str, fragment: bool, **ctx: Any) -> tuple[bytes, str]:
        """The page's live region rendered once, and its digest; a whole page embeds that region (no second
        render). A page's script skips a fetched region whose digest it already shows, so an update that changes
        nothing visible replaces nothing (no flicker, no element of the page swapped under a reader)."""
        import hashlib

        from markupsafe import Markup

        tmpl = self.env.get_template(name)
        common = {"status": self.status, "now": time.time(), **ctx}
        region = tmpl.render(fragment=True, **common)
        digest = hashlib.sha256(region.encode()).hexdigest()[:20]
        if fragment:
            return region.encode(), digest
        return tmpl.render(fragment=False, live_html=Markup(region), digest=digest, **common).encode(), digest


def _epoch(text: str) -> float:
    import calendar

    if not text:
        return 0.0
    base = text[:19]
    try:
        t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    frac = text[19:].rstrip("Z")
    if frac.startswith("."):
        try:
            return t + float("0" + frac[: frac.find("+") if "+" in frac else None])
        except ValueError:
            return float(t)
    return float(t)


def _query(qs: dict[str, list[str]]) -> V.Query:
    def one(name: str, default: str = "") -> str:
        return (qs.get(name) or [default])[0][:200]

    def num(name: str, default: int, lo: int, hi: int) -> int:
        try:
            return min(max(int(one(name, str(default))), lo), hi)
        except ValueError:
            return default

    try:
        sort = V.Sort(one("sort", "name"))
    except ValueError:
        sort = V.Sort.NAME
    return V.Query(
        q=one("q"), sync=one("sync") if one("sync") in ("synced", "outofsync") else "", health=one("health"),
        kind=one("kind") if one("kind") in APP_KINDS else "", drift=one("drift") == "1", suspended=one("suspended") == "1",
        sort=sort, desc=one("dir") == "desc", page=num("page", 1, 1, 1_000_000), per=num("per", 100, 10, 1000),
    )  # fmt: skip


def make_handler(d: Dashboard) -> type[httpd.Handler]:
    class Handler(httpd.Handler):
        # ------------------------------------------------------------------ plumbing
        def _cookies(self) -> dict[str, str]:
            raw = self.headers.get("Cookie") or ""
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(raw)
            except CookieError:
                return {}
            return {k: v.value for k, v in jar.items()}

        def _browser(self) -> tuple[str, bool]:
            """This browser's CSRF cookie value, and whether it is new (then it is set on the response)."""
            got = self._cookies().get(CSRF_COOKIE, "")
            if re.fullmatch(r"[A-Za-z0-9_-]{20,64}", got):
                return got, False
            return new_browser_id(), True

        def _writer(self) -> Who | None:
            """Who may act, or None once the refusal is answered: 403 on a read-only dashboard, 401 without a login."""
            who = self._who()
            if not d.auth.writable:
                self._error(403, "this dashboard is read-only")
                return None
            if who is None:
                self._error(401, "log in with the dashboard's token to act")
                return None
            return who

        def _who(self) -> Who | None:
            return d.auth.who(self._cookies(), self.headers.get("Authorization") or "", self._client())

        def _client(self) -> str:
            """The client the throttle counts: the peer, or behind a trusted proxy the address it forwarded for."""
            return client_address(self.client_address[0], self.headers.get("X-Forwarded-For") or "", d.trusted_proxies)

        def _reply(self, code: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                   headers: tuple[tuple[str, str], ...] = (), cache: str = "no-store") -> None:  # fmt: skip
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            for k, v in (*SECURITY_HEADERS, *headers):
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _cookie(self, name: str, value: str, max_age: int) -> tuple[str, str]:
            return ("Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")

        def _page(self, template: str, topics: str, **ctx: Any) -> None:
            browser, new = self._browser()
            who = self._who()
            qs = parse_qs(urlsplit(self.path).query)
            fragment = (qs.get("fragment") or [""])[0] == "1"
            body, digest = d.render_live(
                template, fragment, who=who, writable=d.auth.writable, csrf=d.auth.csrf_for(browser), topics=topics,
                path=urlsplit(self.path).path, query=urlsplit(self.path).query, **ctx,
            )  # fmt: skip
            headers: tuple[tuple[str, str], ...] = (("X-Live-Digest", digest),)
            if new:
                headers += (self._cookie(CSRF_COOKIE, browser, 30 * 86400),)
            self._reply(200, body, headers=headers)

        def _error(self, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
            body = d.render("error.html", code=code, message=message, who=None, writable=False, csrf="", topics="status",
                            fragment=False, path="", query="")  # fmt: skip
            self._reply(code, body, headers=headers)

        def _throttled(self, exc: Throttled) -> None:
            """429 with Retry-After: this client sent too many wrong tokens (its token was not checked)."""
            retry = (("Retry-After", str(exc.retry_after)),)
            if self.command == "POST" and urlsplit(self.path).path == "/login":
                browser, _ = self._browser()
                body = d.render("login.html", who=None, writable=True, csrf=d.auth.csrf_for(browser), topics="status",
                                fragment=False, path="/login", query="", problem=str(exc), next="/")  # fmt: skip
                self._reply(429, body, headers=retry)
                return
            self._error(429, str(exc), retry)

        # ------------------------------------------------------------------ GET
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            try:
                self._get()
            except Throttled as exc:
                self._throttled(exc)

        def _get(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path in ("/healthz", "/readyz"):
                ok = path == "/healthz" or d.view.wait_synced(0)
                self._reply(200 if ok else 503, b"ok\n" if ok else b"informers not synced\n", "text/plain; charset=utf-8")
                return
            if path.startswith("/static/"):
                name = path[len("/static/"):]
                body = d._static.get(name)
                if body is None or "/" in name:
                    self._error(404, "no such file")
                    return
                ctype = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
                self._reply(200, body, ctype, cache="no-cache")
                return
            if path == "/events":
                if self.command == "HEAD":  # no stream for a HEAD: it would never end
                    self._reply(200, b"", "text/event-stream; charset=utf-8")
                    return
                self._events(parse_qs(url.query))
                return
            if path in ("/", "/apps"):
                self._apps(parse_qs(url.query))
                return
            if path.startswith("/apps/"):
                parts = path.split("/")[2:]
                if len(parts) != 3:
                    self._error(404, "give /apps/KIND/NAMESPACE/NAME")
                    return
                self._app(*parts)
                return
            if path == "/images":
                rows, problem = d.image_rows()
                flux = V.flux_policies(d.view.image_objects("ImagePolicy"), d.view.image_objects("ImageRepository"))
                if flux and d.images is None:
                    problem = ""  # the imagebot controller's objects are the data here: no state file is needed
                self._page("images.html", "status images", rows=rows, problem=problem, flux=flux)
                return
            if path == "/activity":
                apps = [(o, V.app_row(o, d._repos())) for o in d.view.app_objects()]
                rows, _ = d.image_rows()
                actions = d.images.actions() if d.images is not None else []
                entries = V.activity(apps, d.view.all_events(), rows, actions=actions)
                self._page("activity.html", "status activity", entries=entries)
                return
            if path == "/login":
                self._page("login.html", "status", problem="", next=_next((parse_qs(url.query).get("next") or ["/"])[0]))
                return
            self._error(404, "no such page")

        def _apps(self, qs: dict[str, list[str]]) -> None:
            q = _query(qs)
            page = V.app_page(d.rows(), q)
            self._page("apps.html", "status apps", page=page, q=q)

        def _app(self, kind: str, ns: str, name: str) -> None:
            if kind not in APP_KINDS or not NAME.match(ns) or not NAME.match(name):
                self._error(404, "no such app")
                return
            obj = d.view.app(kind, ns, name)
            if obj is None:
                self._error(404, f"no {kind} {ns}/{name} (yet)")
                return
            row = V.app_row(obj, d._repos())
            detail = V.app_detail(obj, row, d.view.managed_objects(row.tracking), d.view.inventory(ns, row.tracking),
                                  d.view.all_events())  # fmt: skip
            self._page("app.html", f"status app:{row.key}", d=detail, r=row)

        def _events(self, qs: dict[str, list[str]]) -> None:
            topics = set(" ".join(qs.get("topics") or ["status"]).split()) | {"status"}
            bad = next((t for t in sorted(topics) if t not in STREAM_TOPICS and not _app_topic(t)), None)
            if bad is not None or len(topics) > MAX_STREAM_TOPICS:
                why = f"unknown topic {bad[:80]!r}" if bad is not None else f"more than {MAX_STREAM_TOPICS} topics"
                self._reply(400, f"{why}: give {', '.join(STREAM_TOPICS)} or app:KIND/NAMESPACE/NAME\n".encode(),
                            "text/plain; charset=utf-8")  # fmt: skip
                return
            st = d.status
            first = frame("status", {"stale": st.stale, "text": st.text, "controllers": st.controllers})
            sock = self.detach()
            if not d.sse.add(sock, topics, first):
                self.detached = False  # the worker closes it after this answer
                self.close_connection = True
                self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nRetry-After: 5\r\n"
                                 b"Connection: close\r\n\r\nbusy\n")

        # ------------------------------------------------------------------ POST
        def do_POST(self) -> None:
            try:
                self._post()
            except Throttled as exc:
                self._throttled(exc)

        def _post(self) -> None:
            url = urlsplit(self.path)
            origin = self.headers.get("Origin")
            host = self.headers.get("Host") or ""
            if origin and urlsplit(origin).netloc != host:
                self._error(403, "cross-origin request refused")
                return
            raw = self.body(limit=16 * 1024)
            if raw is None:
                return
            form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
            bearer = (self.headers.get("Authorization") or "").lower().startswith("bearer ")
            browser = self._cookies().get(CSRF_COOKIE, "")
            if not bearer and not d.auth.csrf_ok(browser, form.get("csrf", "")):
                self._error(403, "missing or wrong CSRF token: reload the page and try again")
                return
            if url.path == "/login":
                self._login(form)
                return
            if url.path == "/logout":
                sid = self._cookies().get(SESSION_COOKIE, "")
                d.auth.logout(sid)
                self._reply(303, b"", headers=(("Location", "/"), self._cookie(SESSION_COOKIE, "", 0)))
                return
            parts = url.path.split("/")
            if len(parts) == 6 and parts[1] == "apps" and parts[5] in ACTIONS:
                self._action(parts[2], parts[3], parts[4], parts[5], form)
                return
            if len(parts) == 5 and parts[1] == "images" and parts[4] in IMAGE_ACTIONS:
                self._image_action(unquote(parts[2]), unquote(parts[3]), parts[4], form)
                return
            if len(parts) == 5 and parts[1] == "imagepolicies" and parts[4] in IMAGE_ACTIONS:
                self._policy_action(parts[2], parts[3], parts[4], form)
                return
            self._error(404, "no such action")

        def _login(self, form: dict[str, str]) -> None:
            nxt = _next(form.get("next", "/"))
            if not d.auth.writable:
                self._error(403, "this dashboard is read-only: no token is configured")
                return
            sid = d.auth.login(form.get("token", ""), self._client())
            if sid is None:
                browser, _ = self._browser()
                body = d.render("login.html", who=None, writable=True, csrf=d.auth.csrf_for(browser), topics="status",
                                fragment=False, path="/login", query="", problem="wrong token", next=nxt)  # fmt: skip
                self._reply(401, body)
                return
            self._reply(303, b"", headers=(("Location", nxt), self._cookie(SESSION_COOKIE, sid, SESSION_SECONDS)))

        def _action(self, kind: str, ns: str, name: str, action: str, form: dict[str, str]) -> None:
            who = self._writer()
            if who is None:
                return
            if kind not in APP_KINDS or not NAME.match(ns) or not NAME.match(name):
                self._error(404, "no such app")
                return
            obj = d.view.app(kind, ns, name)
            if obj is None:
                self._error(404, f"no {kind} {ns}/{name}")
                return
            _, base, plural = APP_KINDS[kind]
            path = f"{base}/namespaces/{ns}/{plural}/{name}"
            if action in ("suspend", "resume") and kind == "Application":
                self._error(400, "an Argo CD Application has no suspend: turn syncPolicy.automated off in Git")
                return
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
            body: dict[str, Any] = (
                {"metadata": {"annotations": {REQUESTED_AT: stamp}}} if action == "sync"
                else {"spec": {"suspend": action == "suspend"}}
            )  # fmt: skip
            actor = _actor(who)
            try:
                d.view.patch(path, body)
            except ApiException as exc:
                self._error(502, f"the API server refused: HTTP {exc.status}")
                return
            except Exception as exc:
                self._error(502, f"the API server is unreachable: {type(exc).__name__}")
                return
            reason = {"sync": "SyncRequested", "suspend": "Suspended", "resume": "Resumed"}[action]
            verb = {"sync": "sync requested", "suspend": "suspended", "resume": "resumed"}[action]
            meta = obj.get("metadata") or {}
            involved = {"apiVersion": obj.get("apiVersion", ""), "kind": kind, "namespace": ns, "name": name,
                        "uid": meta.get("uid", "")}  # fmt: skip
            try:
                d.view.event(ns, involved, reason, f"{verb} by {actor}", {V.ACTOR_ANNOTATION: actor})
            except Exception as exc:  # the action happened; its record is best effort (and said so in the log)
                log.warning("%s %s/%s by %s: event not recorded: %s", action, ns, name, actor, exc)
            log.info("%s %s %s/%s by %s", action, kind, ns, name, actor)
            if "application/json" in (self.headers.get("Accept") or "") or who.via == "bearer":
                self._reply(200, json.dumps({"action": action, "app": f"{kind}/{ns}/{name}", "by": actor,
                                             "requestedAt": stamp if action == "sync" else None}).encode(),
                            "application/json")  # fmt: skip
                return
            self._reply(303, b"", headers=(("Location", _next(form.get("next") or V.app_href(kind, ns, name))),))

        def _image_action(self, image: str, env: str, action: str, form: dict[str, str]) -> None:
            who = self._writer()
            if who is None:
                return
            if d.images is None:
                self._error(409, "no imagebot state given (dashboard serve --imagebot-state PATH or --imagebot-config FILE)")
                return
            reason = " ".join(form.get("reason", "").split())[:200]  # one line, bounded: shown on every row
            actor = _actor(who)
            try:
                done = d.images.act(action, image, env, actor, reason)
            except ActionRefused as exc:
                self._error(exc.status, str(exc))
                return
            log.info("%s %s/%s by %s: %s", action, image, env, actor, done)
            d.sse.publish("images", "changed", {})
            d.sse.publish("activity", "changed", {})
            if "application/json" in (self.headers.get("Accept") or "") or who.via == "bearer":
                self._reply(200, json.dumps({"action": action, "image": image, "environment": env, "by": actor,
                                             "result": done}).encode(), "application/json")  # fmt: skip
                return
            self._reply(303, b"", headers=(("Location", _next(form.get("next") or "/images")),))

        def _policy_action(self, ns: str, name: str, action: str, form: dict[str, str]) -> None:
            """Hold / Release / Approve on an ImagePolicy of the imagebot controller: the annotations it reads, as
            ``imagebot hold|release|approve --policy`` writes them (imagebot/controller/overrides.py: a merge patch
            with the resourceVersion as precondition), recorded as an Event on the policy with who did it."""
            from imagebot.controller import overrides as O

            who = self._writer()
            if who is None:
                return
            if not NAME.match(ns) or not NAME.match(name) or (d.view.namespaces and ns not in d.view.namespaces):
                self._error(404, "no such ImagePolicy")
                return
            ref = O.PolicyRef(ns, name)
            actor = _actor(who)
            # one line, bounded; none given: a hold keeps the current reason (the page offers Hold only when not held)
            reason = " ".join(form.get("reason", "").split())[:200] or None if action == "hold" else None
            tag = form.get("tag") or None if action == "approve" else None  # the pending tag the page showed

            def get(path: str) -> dict[str, Any] | None:
                try:
                    found = request_json(d.view.api, "GET", path, timeout=15)
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
                return found if isinstance(found, dict) else None

            def patch(path: str, body: dict[str, Any]) -> None:
                try:
                    d.view.patch(path, body)
                except ApiException as exc:
                    if exc.status == 409:
                        raise O.Conflict from None
                    raise

            try:
                written, done = O.apply(O.Action(action), ref, get, patch, reason=reason, tag=tag)
            except O.NotFound as exc:
                self._error(404, str(exc))
                return
            except O.Refused as exc:
                self._error(400, str(exc))
                return
            except O.Contended as exc:
                self._error(409, str(exc))
                return
            except ApiException as exc:
                self._error(502, f"the API server refused: HTTP {exc.status}")
                return
            except Exception as exc:
                self._error(502, f"the API server is unreachable: {type(exc).__name__}")
                return
            if written:
                verb = {"hold": "Held", "release": "Released", "approve": "Approved"}[action]
                involved = {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy", "namespace": ns, "name": name}
                try:
                    d.view.event(ns, involved, verb, f"{done} — by {actor}", {V.ACTOR_ANNOTATION: actor})
                except Exception as exc:  # the action happened; its record is best effort (and said so in the log)
                    log.warning("%s %s by %s: event not recorded: %s", action, ref, actor, exc)
                d.sse.publish("activity", "changed", {})
            log.info("%s ImagePolicy %s by %s: %s", action, ref, actor, done)
            if "application/json" in (self.headers.get("Accept") or "") or who.via == "bearer":
                self._reply(200, json.dumps({"action": action, "policy": str(ref), "by": actor, "written": written,
                                             "result": done}).encode(), "application/json")  # fmt: skip
                return
            self._reply(303, b"", headers=(("Location", _next(form.get("next") or "/images")),))

    return Handler


def _app_topic(topic: str) -> bool:
    """``app:KIND/NAMESPACE/NAME`` of a kind the dashboard shows, with Kubernetes names."""
    kind, _, rest = topic.removeprefix("app:").partition("/") if topic.startswith("app:") else ("", "", "")
    ns, _, name = rest.partition("/")
    return kind in APP_KINDS and bool(NAME.match(ns)) and bool(NAME.match(name))


def _actor(who: Who) -> str:
    """How an action's author is recorded: the token's name and whether a browser session or the API acted."""
    return f"{who.name} ({'dashboard' if who.via == 'session' else 'dashboard API'})"


def _next(target: str) -> str:
    """Only a path on this server ("/…", never "//host" or a scheme) is followed after a form."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(c in target for c in "\r\n"):
        return "/"
    return quote(target, safe="/?=&%-_.~+:")


def serve(listen: str, d: Dashboard, limits: httpd.Limits | None = None) -> httpd.Server:
    return httpd.start(listen, make_handler(d), limits)

