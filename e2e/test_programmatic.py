"""The programmatic login API (issue #10 items 1 and 2): a script asks a route host for a signed
sign-in URL, a person signs in, and the script's localhost callback server receives the session
token, which then works on the route in every header form of DESIGN.md §4.

The "browser" is a `requests` cookie jar following redirects and posting the provider's login form
(the example provider needs no JavaScript). The script is written as a Pomerium programmatic-access
script would be: GET /.pomerium/api/v1/login?pomerium_redirect_uri=..., open the URL, read
`pomerium_jwt` on a local HTTP server, call with `Authorization: Pomerium <jwt>`.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from conftest import wait_for
from idp import PASSWORD
from test_people import People, people, token_header_forms  # noqa: F401  (`people`: the module-scoped fixture)

pytestmark = pytest.mark.people


class Callback:
    """A one-shot localhost callback server, as a script would run."""

    def __init__(self):
        self.query: dict[str, list[str]] | None = None
        self.headers: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.query = parse_qs(urlsplit(self.path).query)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"signed in")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cb():
    c = Callback()
    yield c
    c.close()


def login_url(p: People, host: str, redirect: str, *, pomerium: bool = False) -> requests.Response:
    prefix, param = (".pomerium", "pomerium_redirect_uri") if pomerium else (".portcullis", "redirect_uri")
    return requests.get(p.url(host, f"/{prefix}/api/v1/login?{param}={quote(redirect, safe='')}"),
                        timeout=20, allow_redirects=False)


def sign_in_as(p: People, url: str, user: str = "alice") -> requests.Response:
    """Open `url` like a browser and sign in at the provider; return the last response."""
    with requests.Session() as jar:
        r = jar.get(url, headers={"Accept": "text/html"}, timeout=20)
        assert r.url.startswith(f"{p.idp.issuer}/interaction/"), (r.status_code, r.url, r.text[:200])
        return jar.post(f"{r.url}/login", data={"login": user, "password": PASSWORD},
                        headers={"Accept": "text/html"}, timeout=20)


def test_a_pomerium_style_script_gets_a_session_token_that_works_in_every_header_form(
        people, resolve_localhost, cb):
    p = people
    r = login_url(p, "app.localhost", cb.url, pomerium=True)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    assert "no-store" in r.headers.get("Cache-Control", "")
    url = r.text.strip()
    assert url.startswith(f"{p.base}/.portcullis/sign_in?"), url

    done = sign_in_as(p, url)
    assert done.status_code == 200 and done.text == "signed in", (done.status_code, done.url)
    hop = done.history[-1]
    assert hop.headers.get("Cache-Control") == "no-store", hop.headers
    assert hop.headers.get("Referrer-Policy") == "no-referrer", hop.headers
    assert cb.query, "the callback server was not called"
    token = cb.query["pomerium_jwt"][0]
    assert cb.query["portcullis_jwt"] == [token]

    for what, headers in token_header_forms(token).items():
        r = requests.get(p.url("app.localhost", "/api"), headers=headers, timeout=20, allow_redirects=False)
        assert r.status_code == 200, (what, r.status_code, r.text[:300])
        assert r.json()["identity"].get("email") == "alice@example.com", (what, r.json())
        # Policy still decides: alice's token is refused where her browser session would be.
        r = requests.get(p.url("denied.localhost", "/api"), headers=headers, timeout=20, allow_redirects=False)
        assert r.status_code == 403, (what, r.status_code)

    # A sent but invalid token is 401, never a redirect, even for a browser.
    for what, headers in {"truncated": {"Authorization": f"Pomerium {token[:-4]}"},
                          "garbage": {"X-Pomerium-Authorization": "not-a-token"}}.items():
        r = requests.get(p.url("app.localhost", "/"), headers={**headers, "Accept": "text/html"},
                         timeout=20, allow_redirects=False)
        assert r.status_code == 401, (what, r.status_code)
        assert "Location" not in r.headers


def test_the_portcullis_form_and_a_second_login_with_the_browser_session(people, resolve_localhost, cb):
    p = people
    r = login_url(p, "payments.localhost", cb.url)
    assert r.status_code == 200, r.text
    with requests.Session() as jar:
        r = jar.get(r.text.strip(), headers={"Accept": "text/html"}, timeout=20)
        r = jar.post(f"{r.url}/login", data={"login": "alice", "password": PASSWORD},
                     headers={"Accept": "text/html"}, timeout=20)
        assert r.text == "signed in", (r.status_code, r.url)
        first = cb.query["portcullis_jwt"][0]
        # The same browser asks again: its session on the authenticate host answers at once.
        cb.query = None
        r = jar.get(login_url(p, "payments.localhost", cb.url).text.strip(), timeout=20)
        assert r.text == "signed in", (r.status_code, r.url)
        assert cb.query["portcullis_jwt"][0] == first
    r = requests.get(p.url("payments.localhost", "/"), headers={"Authorization": f"Bearer {first}"}, timeout=20)
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("redirect", [
    "http://localhost.evil.example/cb",
    "http://localhost@evil.example/cb",
    "http://evil.example#@localhost/cb",
    "//evil.example/cb",
    "/\\evil.example/cb",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "http://evil.example/cb",
    "HTTP://EVIL.EXAMPLE/cb",
    "http://evil.example%2F@localhost/cb",
])
def test_look_alike_redirects_are_refused(people, resolve_localhost, redirect):
    r = login_url(people, "app.localhost", redirect)
    assert r.status_code == 400, (redirect, r.status_code, r.text[:300])
    assert r.json()["error"] == "invalid_request", r.text


def test_tampered_or_foreign_sign_in_urls_are_refused(people, resolve_localhost, cb):
    p = people
    url = login_url(p, "app.localhost", cb.url).text.strip()
    split = urlsplit(url)
    for what, query in {
        "another redirect": split.query.replace(str(cb.port), str(cb.port + 1)),
        "another route": split.query.replace("app.localhost", "denied.localhost"),
        "no signature": "&".join(q for q in split.query.split("&") if not q.startswith("sig=")),
        "an extra parameter": split.query + "&prompt=none",
        "a longer expiry": "&".join(q if not q.startswith("exp=") else "exp=99999999999"
                                    for q in split.query.split("&")),
    }.items():
        r = requests.get(f"{p.base}{split.path}?{query}", headers={"Accept": "text/html"}, timeout=20,
                         allow_redirects=False)
        assert r.status_code == 400, (what, r.status_code, r.headers.get("Location"))
    assert cb.query is None, "a refused sign-in URL must not reach the callback"


def test_other_methods_are_405(people, resolve_localhost, cb):
    r = requests.post(people.url("app.localhost", f"/.portcullis/api/v1/login?redirect_uri={quote(cb.url)}"),
                      timeout=20, allow_redirects=False)
    assert r.status_code == 405, r.status_code
    assert "GET" in r.headers.get("Allow", "")


def test_portcullis_login_no_browser_prints_a_working_token_and_caches_it(people, portcullis_bin, tmp_path):
    """`portcullis login --no-browser`: the URL on stderr, a person (here a cookie jar) signs in,
    the token alone on stdout, cached 0600, and reused by the next run without a sign-in. The
    route is addressed by 127.0.0.1 so the CLI resolves it without /etc/hosts entries."""
    p = people
    echo = p.dev.echo_url
    p.dev.apply_docs({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                      "metadata": {"name": "cli", "namespace": "e2e-people"},
                      "spec": {"from": "http://127.0.0.1", "to": [{"url": echo}],
                               "policy": {"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}}})
    route_url = f"http://127.0.0.1:{p.port}/"
    wait_for(lambda: requests.get(route_url, timeout=10).status_code == 401, 30, what="the cli route served")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen([portcullis_bin, "login", "--no-browser", "--timeout", "60s", route_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stderr:
            if "Open this URL to sign in:" in line:
                url = line.split("Open this URL to sign in:", 1)[1].strip()
                break
        assert url and url.startswith(f"{p.base}/.portcullis/sign_in?"), url
        done = sign_in_as(p, url)
        assert done.status_code == 200, (done.status_code, done.url)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    token = out.strip()
    assert out == token + "\n" and token.count(".") == 2, out
    assert token not in err
    r = requests.get(route_url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
    assert r.status_code == 200 and r.json()["identity"].get("email") == "alice@example.com", r.text[:300]
    cached = list((tmp_path / "config" / "portcullis" / "sessions").iterdir())
    assert len(cached) == 1 and stat.S_IMODE(cached[0].stat().st_mode) == 0o600, cached
    again = subprocess.run([portcullis_bin, "login", "--no-browser", "--timeout", "5s", route_url],
                           capture_output=True, text=True, env=env, timeout=30)
    assert again.returncode == 0 and again.stdout.strip() == token, (again.returncode, again.stderr)
    assert "Open this URL" not in again.stderr
