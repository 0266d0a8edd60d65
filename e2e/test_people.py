"""People sign-in (issue #9): Portcullis as an OpenID Connect relying party of the example provider
(examples/oidc-provider), driven through headless Chromium (e2e/node/browser.mjs) and plain
`requests` cookie jars (DESIGN §4 "Served on every route host", SECURITY.md "Redirects and login").

One `portcullis dev` and one provider serve the whole module (the `people` fixture): Portcullis's
http listener on a port chosen first, `authenticateURL: http://localhost:<port>`, and the provider's
redirect URI `http://localhost:<port>/oauth2/callback` and post-logout URI
`http://localhost:<port>/.portcullis/signed_out`. Routes in namespace `e2e-people`, all to the dev
echo upstream:

    app           http://app.localhost       email is alice@example.com
    groups-route  http://payments.localhost  groups has payments
    denied        http://denied.localhost    domain is nowhere.example

Users: alice (alice@example.com, groups payments, eng) and bob (bob@other.example, no groups),
password `password`. Each test signs in with its own browser (fresh profile) except the ones that
only look around with alice's module-wide browser (`alice`). `*.localhost` names resolve to
127.0.0.1 in Chromium by themselves and for `requests` through `resolve_localhost`.
Screenshots of every page: e2e/artifacts/test_people*.png.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from browser import Browser, Page
from conftest import DevServer, ServerExited, add_log, free_port, namespace, wait_for, write_yaml
from idp import PASSWORD, OidcProvider, localhost_names, sign_in_at_provider, start_provider

pytestmark = pytest.mark.people

NS = "e2e-people"
SCOPES = ["openid", "email", "profile", "groups"]
SIGN_OUT_FORM = 'form[action$="/.portcullis/sign_out"]'
SIGN_OUT_BUTTON = f'{SIGN_OUT_FORM} button, {SIGN_OUT_FORM} input[type="submit"]'


@dataclass
class People:
    dev: DevServer
    idp: OidcProvider
    port: int
    work: Path
    routes: dict[str, str] = field(default_factory=dict)  # name -> host

    @property
    def base(self) -> str:
        """The authenticate URL (identity endpoints, sign-in)."""
        return f"http://localhost:{self.port}"

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


def people_route(name: str, host: str, upstream: str, criterion: dict) -> dict:
    return {"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"from": f"http://{host}", "to": [{"url": upstream}],
                     "policy": {"allow": {"or": [criterion]}}, "passIdentityHeaders": True}}


def route_ready(dev: DevServer, name: str) -> bool:
    obj = dev.get_json("route", name, "-n", NS)
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    ready = conds.get("Ready")
    assert ready and ready["status"] == "True", f"route {name}: {conds}"
    return True


@contextlib.contextmanager
def people_site(module, portcullis_bin, kubectl_bin, work: Path, *, provider_settings: dict | None = None,
                settings: dict | None = None) -> Iterator[People]:
    """The provider, then `portcullis dev` on a port picked first, then the routes; stopped on exit.
    `provider_settings` go to `start_provider` (e.g. `extra_clients`), `settings` into Portcullis's
    config file (e.g. `sessionLifetime`, or `idp` keys, merged into the provider's)."""
    module._portcullis_servers = []
    provider = dev = None
    extra = dict(settings or {})
    extra_idp = extra.pop("idp", {})
    for attempt in range(3):
        port = free_port()
        provider = start_provider(work, name=f"idp{attempt + 1}",
                                  redirect_uris=[f"http://localhost:{port}/oauth2/callback"],
                                  post_logout_redirect_uris=[f"http://localhost:{port}/.portcullis/signed_out"],
                                  **(provider_settings or {}))
        add_log(module, f"provider stderr ({provider!r})", provider.stderr_tail)
        secret_file = work / "idp-client-secret"
        secret_file.write_text(provider.client_secret)
        secret_file.chmod(0o600)
        config = write_yaml(work / f"portcullis-{attempt}.yaml", {
            "authenticateURL": f"http://localhost:{port}",
            "idp": {"issuer": provider.issuer, "clientID": provider.client_id,
                    "clientSecretFile": str(secret_file), "scopes": SCOPES, **extra_idp},
            **extra,
        })
        dev = DevServer(binary=portcullis_bin, kubectl_bin=kubectl_bin, data_dir=work / f"data-{attempt}",
                        work_dir=work, extra_args=["--config", str(config)], name=f"people{attempt + 1}",
                        http_addr=f"127.0.0.1:{port}")
        module._portcullis_servers.append(dev)
        try:
            dev.start()
            break
        except ServerExited as exc:
            provider.stop()
            if attempt < 2 and "in use" in str(exc).lower():
                continue
            raise
    assert dev is not None and provider is not None
    p = People(dev=dev, idp=provider, port=port, work=work)
    try:
        echo = dev.echo_url
        assert echo, "portcullis dev printed no `echo upstream` line"
        p.routes = {"app": "app.localhost", "groups-route": "payments.localhost", "denied": "denied.localhost"}
        dev.apply_docs(
            namespace(NS),
            people_route("app", "app.localhost", echo, {"email": {"is": "alice@example.com"}}),
            people_route("groups-route", "payments.localhost", echo, {"groups": {"has": "payments"}}),
            people_route("denied", "denied.localhost", echo, {"domain": {"is": "nowhere.example"}}),
        )
        for name in p.routes:
            wait_for(lambda: route_ready(dev, name), 30, what=f"route {NS}/{name} Ready")
        with localhost_names():
            for host in p.routes.values():  # served: an anonymous API call is refused, not 404
                wait_for(lambda: requests.get(p.url(host), timeout=10).status_code == 401, 30,
                         what=f"{host} served (401 without a credential)")
        yield p
    finally:
        dev.stop(timeout=15)
        provider.stop()
    if m := re.search(r"panicked at .*", dev.stderr_text()):
        pytest.fail(f"portcullis panicked: {m.group(0)}", pytrace=False)


@pytest.fixture(scope="module")
def people(request, portcullis_bin, kubectl_bin, tmp_path_factory):
    """The module's provider, `portcullis dev` and routes (`people_site` with the defaults)."""
    with people_site(request.node, portcullis_bin, kubectl_bin, tmp_path_factory.mktemp("people")) as p:
        yield p


# --------------------------------------------------------------------------------------------
# browser helpers
# --------------------------------------------------------------------------------------------


@dataclass
class SignedIn:
    browser: Browser
    target: str
    at_provider: Page  # after opening `target`
    back: Page  # after signing in


def sign_in(p: People, b: Browser, user: str, host: str = "app.localhost",
            path: str = "/some/path?x=1") -> SignedIn:
    """Open `http://<host>:<port><path>` in `b`, sign in as `user` at the provider; both pages."""
    target = p.url(host, path)
    at_provider = b.run({"goto": target, "screenshot": f"{user}-1-provider-sign-in"})
    assert at_provider.url.startswith(f"{p.idp.issuer}/interaction/"), at_provider.describe()
    assert at_provider.status == 200 and at_provider.title == "Sign in", at_provider.describe()
    back = b.run({"login": user, "screenshot": f"{user}-2-after-sign-in"})
    return SignedIn(b, target, at_provider, back)


def echo_of(page: Page) -> dict:
    assert page.status == 200, page.describe()
    echo = page.json()
    assert {"method", "path", "headers", "identity"} <= set(echo), f"not the echo upstream: {page.body[:300]}"
    return echo


def portcullis_jwks(p: People) -> KeySet:
    r = requests.get(f"{p.base}/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200, r.text
    return KeySet.import_key_set(r.json())


def hop_starting(page: Page, prefix: str) -> dict:
    found = [n for n in page.navigations if n["url"].startswith(prefix)]
    assert found, f"no navigation to {prefix}...\n{page.describe()}"
    return found[0]


def first_hop(page: Page) -> dict:
    assert page.navigations, page.describe()
    return page.navigations[0]


def is_sign_in(p: People, location: str | None) -> bool:
    return bool(location) and location.startswith(f"{p.base}/.portcullis/sign_in")


@pytest.fixture(scope="module")
def alice(people, tmp_path_factory):
    """One browser signed in as alice at `app`, shared by the tests that only look."""
    b = Browser("test_people-alice", tmp_path_factory.mktemp("alice-browser"))
    try:
        yield sign_in(people, b, "alice")
    finally:
        b.close()


def require_signed_in(s: SignedIn) -> None:
    assert s.back.url == s.target and s.back.status == 200, f"alice is not signed in:\n{s.back.describe()}"


def anon(p: People, host: str, path: str = "/", *, html: bool = False, cookie: str | None = None,
         headers: dict | None = None, session: requests.Session | None = None) -> requests.Response:
    h = {"Accept": "text/html,application/xhtml+xml"} if html else {"Accept": "application/json"}
    if cookie is not None:
        h["Cookie"] = f"_portcullis={cookie}"
    h.update(headers or {})
    return (session or requests).get(p.url(host, path), headers=h, allow_redirects=False, timeout=20)


def assert_no_credential(p: People, host: str, cookie: str, what: str) -> None:
    """`cookie` as `_portcullis` counts as no credential: 302 to sign-in for a browser, 401 for an
    API client, never 200 or 500."""
    r = anon(p, host, "/some/path", html=True, cookie=cookie)
    assert r.status_code == 302 and is_sign_in(p, r.headers.get("Location")), (
        f"{what}, Accept text/html: HTTP {r.status_code} Location {r.headers.get('Location')} {r.text[:200]}")
    r = anon(p, host, "/some/path", cookie=cookie)
    assert r.status_code == 401, f"{what}, API: HTTP {r.status_code} {r.text[:200]}"
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (what, r.headers)


def claims_of(token: str) -> dict:
    """The payload of a JWT, not verified (the tests only read `sid`, `rfa`, `exp`)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def csrf_of(page: str) -> str:
    m = re.search(r'<input[^>]*name="csrf"[^>]*value="([^"]*)"', page) or re.search(
        r'<input[^>]*value="([^"]*)"[^>]*name="csrf"', page)
    assert m, f"no csrf field on the who-am-I page: {page[:800]}"
    return html.unescape(m.group(1))


def token_header_forms(token: str, *, bearer: bool = True, cookie: bool = False) -> dict[str, dict]:
    """The headers a route reads a session token from (DESIGN §4), by name: `Authorization:
    Bearer` (unless `bearer=False`), the Pomerium forms, `X-Portcullis-Authorization`, and with
    `cookie=True` the `_portcullis` cookie."""
    forms = {
        "Authorization: Pomerium": {"Authorization": f"Pomerium {token}"},
        "Authorization: Bearer Pomerium-": {"Authorization": f"Bearer Pomerium-{token}"},
        "X-Pomerium-Authorization": {"X-Pomerium-Authorization": token},
        "X-Portcullis-Authorization": {"X-Portcullis-Authorization": token},
    }
    if bearer:
        forms["Authorization: Bearer"] = {"Authorization": f"Bearer {token}"}
    if cookie:
        forms["cookie"] = {"Cookie": f"_portcullis={token}"}
    return forms


def sign_out_cookie(p: People, host: str, token: str) -> requests.Response:
    """End the session of `token` as its who-am-I page's form would: the page on `host` with the
    token as the `_portcullis` cookie gives the csrf, then POST sign_out with both."""
    who = anon(p, host, "/.portcullis/", html=True, cookie=token)
    assert who.status_code == 200, (who.status_code, who.text[:300])
    r = requests.post(p.url(host, "/.portcullis/sign_out"), data={"csrf": csrf_of(who.text)},
                      headers={"Accept": "text/html", "Cookie": f"_portcullis={token}",
                               "Origin": f"http://{host}:{p.port}"}, allow_redirects=False, timeout=20)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    return r


# --------------------------------------------------------------------------------------------
# the browser flow
# --------------------------------------------------------------------------------------------


def test_browser_sign_in_returns_to_the_exact_url(people, alice):
    p, s = people, alice
    # 1. The route sends the browser to sign-in on the authenticate host, which sends it to the
    #    provider with an authorization-code request: PKCE S256, state, nonce, our callback.
    hop = first_hop(s.at_provider)
    assert hop["url"] == s.target and hop["status"] == 302, s.at_provider.describe()
    assert is_sign_in(p, hop["location"]), hop
    meta = p.idp.discovery()
    auth = hop_starting(s.at_provider, meta["authorization_endpoint"] + "?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(auth["url"]).query).items()}
    assert q["client_id"] == p.idp.client_id and q["response_type"] == "code", q
    assert q["redirect_uri"] == f"{p.base}/oauth2/callback", q
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43, q
    assert len(q["state"]) >= 16 and len(q.get("nonce", "")) >= 16, q
    assert set(SCOPES) <= set(q["scope"].split()), q

    # 2. After the provider: back at exactly the URL first asked for, answered by the upstream.
    require_signed_in(s)
    hop_starting(s.back, f"{p.base}/oauth2/callback?")
    echo = echo_of(s.back)
    assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/some/path", "x=1"), echo
    assert echo["identity"] and echo["identity"].get("email") == "alice@example.com", echo["identity"]
    # The upstream gets a verifiable assertion, never our cookie.
    headers = echo["headers"]
    assert "_portcullis" not in str(headers.get("cookie", "")), headers
    claims = jwt.decode(headers["x-portcullis-jwt-assertion"], portcullis_jwks(p)).claims
    jwt.JWTClaimsRegistry(leeway=5, iss={"essential": True, "value": p.base},
                          aud={"essential": True, "value": "http://app.localhost"},
                          email={"essential": True, "value": "alice@example.com"}).validate(claims)


def test_who_am_i_page(people, alice):
    p, s = people, alice
    require_signed_in(s)
    page = s.browser.run({"goto": p.url("app.localhost", "/.portcullis/"), "screenshot": "who-am-i"})
    assert page.status == 200 and page.url == p.url("app.localhost", "/.portcullis/"), page.describe()
    assert page.headers.get("content-type", "").startswith("text/html"), page.headers
    assert "alice@example.com" in page.text, page.text[:1000]
    assert "eyJ" not in page.text, "a token is shown on the who-am-I page"
    xfo = page.headers.get("x-frame-options", "").upper()
    csp = page.headers.get("content-security-policy", "")
    assert xfo == "DENY" or re.search(r"frame-ancestors\s+'none'", csp), (xfo, csp)
    forms = s.browser.run({"query": SIGN_OUT_FORM}).steps[0]["elements"]
    assert len(forms) == 1, forms
    assert forms[0]["attributes"].get("method", "").lower() == "post", forms
    csrf = s.browser.run({"query": f'{SIGN_OUT_FORM} input[name="csrf"]'}).steps[0]["elements"]
    assert len(csrf) == 1 and csrf[0]["attributes"].get("type") == "hidden" and csrf[0]["value"], csrf
    buttons = s.browser.run({"query": SIGN_OUT_BUTTON}).steps[0]["elements"]
    assert buttons, "no sign-out button"


def test_session_cookie_flags(people, alice):
    p, s = people, alice
    require_signed_in(s)
    cookie = s.back.cookie("_portcullis", "app.localhost")
    assert cookie, f"no _portcullis cookie for app.localhost: {s.back.cookies}"
    assert cookie["httpOnly"] is True and cookie["secure"] is False and cookie["sameSite"] == "Lax", cookie
    # The Set-Cookie line itself, as sent on the route host.
    lines = [c for n in s.back.navigations if urlsplit(n["url"]).hostname == "app.localhost"
             for c in n.get("setCookies", []) if c.startswith("_portcullis=")]
    assert lines, s.back.describe()
    attrs = [a.strip().lower() for a in lines[-1].split(";")[1:]]
    assert "httponly" in attrs and "samesite=lax" in attrs and "secure" not in attrs, lines[-1]


def test_denied_route_answers_403_html(people, alice):
    p, s = people, alice
    require_signed_in(s)
    page = s.browser.run({"goto": p.url("denied.localhost", "/"), "screenshot": "denied-403"})
    assert urlsplit(page.url).hostname == "denied.localhost" and page.status == 403, page.describe()
    assert page.headers.get("content-type", "").startswith("text/html"), page.headers
    assert "access denied" in page.text.lower(), page.text[:500]


def test_alice_passes_the_groups_route(people, alice):
    p, s = people, alice
    require_signed_in(s)
    page = s.browser.run({"goto": p.url("payments.localhost", "/pay"), "screenshot": "payments-alice"})
    assert page.url == p.url("payments.localhost", "/pay"), page.describe()
    echo = echo_of(page)
    assert echo["path"] == "/pay" and echo["identity"].get("email") == "alice@example.com", echo


def test_bob_is_forbidden_on_app_and_payments(people, browser_factory):
    p = people
    s = sign_in(p, browser_factory("bob"), "bob")
    assert s.back.url == s.target and s.back.status == 403, s.back.describe()
    page = s.browser.run({"goto": p.url("payments.localhost", "/pay"), "screenshot": "payments-bob"})
    assert page.url == p.url("payments.localhost", "/pay") and page.status == 403, page.describe()


def test_sign_out_ends_the_session(people, browser_factory, resolve_localhost):
    p = people
    s = sign_in(p, browser_factory("alice"), "alice")
    require_signed_in(s)
    old = s.back.cookie("_portcullis", "app.localhost")
    assert old, s.back.cookies
    # The cookie replayed outside the browser works while the session lasts...
    r = anon(p, "app.localhost", "/some/path", cookie=old["value"])
    assert r.status_code == 200, f"the session cookie replayed with requests: HTTP {r.status_code} {r.text[:200]}"

    page = s.browser.run({"goto": p.url("app.localhost", "/.portcullis/")},
                         {"click": SIGN_OUT_BUTTON, "screenshot": "after-sign-out"})
    assert page.status is not None and page.status < 500, page.describe()
    # ... and not after: the route sends the browser to sign in again.
    page = s.browser.run({"goto": s.target, "screenshot": "app-after-sign-out"})
    hop = first_hop(page)
    assert hop["url"] == s.target and hop["status"] == 302 and is_sign_in(p, hop["location"]), page.describe()
    assert_no_credential(p, "app.localhost", old["value"], "the signed-out session's cookie")


# --------------------------------------------------------------------------------------------
# without a browser
# --------------------------------------------------------------------------------------------


def test_plain_http_redirects_to_sign_in_and_the_provider(people, resolve_localhost):
    p = people
    with requests.Session() as jar:
        r = anon(p, "app.localhost", "/some/path?x=1", html=True, session=jar)
        assert r.status_code == 302, (r.status_code, r.text[:300])
        location = r.headers["Location"]
        assert location.startswith(f"{p.base}/.portcullis/sign_in?"), location
        r = jar.get(location, headers={"Accept": "text/html"}, timeout=20)
        assert r.status_code == 200 and r.url.startswith(f"{p.idp.issuer}/interaction/"), (r.status_code, r.url)
        assert 'name="login"' in r.text and 'name="password"' in r.text

    # An API client without a credential: RFC 6750, no redirect.
    r = anon(p, "app.localhost", "/some/path")
    assert r.status_code == 401, (r.status_code, r.text[:300])
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.json().get("error"), r.text
    assert "Location" not in r.headers


def test_plain_http_cookie_jar_signs_in(people, resolve_localhost):
    """The whole sign-in with nothing but redirects and a cookie jar (no JavaScript needed)."""
    p = people
    target = p.url("app.localhost", "/jar?y=2")
    with requests.Session() as jar:
        r = jar.get(target, headers={"Accept": "text/html"}, timeout=20)
        assert r.url.startswith(f"{p.idp.issuer}/interaction/"), (r.status_code, r.url)
        r = jar.post(f"{r.url}/login", data={"login": "alice", "password": PASSWORD},
                     headers={"Accept": "text/html"}, timeout=20)
        assert r.url == target and r.status_code == 200, (r.status_code, r.url, [h.url for h in r.history])
        echo = r.json()
        assert echo["path"] == "/jar" and echo["identity"].get("email") == "alice@example.com", echo
        assert any(c.name == "_portcullis" and c.domain.lstrip(".") == "app.localhost" for c in jar.cookies), (
            [(c.name, c.domain) for c in jar.cookies])


# --------------------------------------------------------------------------------------------
# bad input (SECURITY.md "Redirects and login")
# --------------------------------------------------------------------------------------------


def start_flow(p: People) -> tuple[requests.Session, str]:
    """A sign-in started with a cookie jar up to the provider's authorization endpoint:
    the jar (holding whatever login cookie Portcullis set) and the authorization URL."""
    jar = requests.Session()
    r = anon(p, "app.localhost", "/flow", html=True, session=jar)
    authorize = p.idp.discovery()["authorization_endpoint"]
    for _ in range(6):
        assert r.status_code in (302, 303), (r.status_code, r.url, r.text[:300])
        location = r.headers["Location"]
        if location.startswith(authorize):
            return jar, location
        r = jar.get(location, headers={"Accept": "text/html"}, allow_redirects=False, timeout=20)
    raise AssertionError(f"never reached {authorize}")


def provider_code(p: People, jar: requests.Session, authorize_url: str) -> str:
    """Sign in at the provider as alice with `jar` and return the callback URL it sends back
    (with a real code and state), without following it."""
    return sign_in_at_provider(p.idp, jar, authorize_url, "alice", f"{p.base}/oauth2/callback")


def callback(p: People, query: str, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).get(f"{p.base}/oauth2/callback{query}", headers={"Accept": "text/html"},
                                     allow_redirects=False, timeout=20)


def test_callback_without_or_with_foreign_state_is_400(people, resolve_localhost):
    p = people
    for query, what in [("", "nothing"), ("?code=abc", "no state"), ("?state=abc", "no code"),
                        (f"?code=abc&state={secrets.token_urlsafe(32)}", "a foreign state"),
                        ("?error=access_denied", "an error without state"),
                        (f"?code=abc&state={'A' * 1000}", "a long made-up state")]:
        r = callback(p, query)
        assert r.status_code == 400, f"callback with {what}: HTTP {r.status_code} {r.text[:200]}"
    # A state from a real sign-in, but another browser (no login cookie): 400, even with the
    # provider's real code.
    jar, authorize_url = start_flow(p)
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    with jar:
        r = callback(p, "?" + urlencode({"code": "abc", "state": state}), session=requests.Session())
        assert r.status_code == 400, f"callback without the login cookie: HTTP {r.status_code} {r.text[:200]}"
        real = provider_code(p, jar, authorize_url)
        r = requests.get(real, headers={"Accept": "text/html"}, allow_redirects=False, timeout=20)
        assert r.status_code == 400, f"real code, no login cookie: HTTP {r.status_code} {r.text[:200]}"


def test_replayed_callback_is_400(people, browser_factory):
    p = people
    s = sign_in(p, browser_factory("alice"), "alice")
    require_signed_in(s)
    done = hop_starting(s.back, f"{p.base}/oauth2/callback?")
    page = s.browser.run({"goto": done["url"], "screenshot": "callback-replayed"})
    assert page.url == done["url"] and page.status == 400, page.describe()
    # The session is untouched.
    page = s.browser.run({"goto": s.target})
    assert page.url == s.target and page.status == 200, page.describe()


def test_forged_or_truncated_cookie_is_no_credential(people, alice, resolve_localhost):
    p, s = people, alice
    require_signed_in(s)
    real = s.back.cookie("_portcullis", "app.localhost")["value"]
    r = anon(p, "app.localhost", "/x", cookie=real)
    assert r.status_code == 200, f"the real cookie: HTTP {r.status_code}"
    flipped = real[: len(real) // 2] + ("A" if real[len(real) // 2] != "A" else "B") + real[len(real) // 2 + 1:]
    forged = {
        "truncated by one": real[:-1],
        "truncated to half": real[: len(real) // 2],
        "one character changed": flipped,
        "garbage": "not-a-session",
        "empty": "",
        "alg none JWT": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifQ.",
        "huge": "A" * 3000,
    }
    for what, value in forged.items():
        assert_no_credential(p, "app.localhost", value, f"a {what} cookie")


@pytest.mark.parametrize("fields,what", [({"csrf": None}, "without csrf"), ({"csrf": "wrong"}, "a wrong csrf")])
def test_sign_out_needs_csrf(people, browser_factory, fields, what):
    p = people
    s = sign_in(p, browser_factory("alice"), "alice")
    require_signed_in(s)
    page = s.browser.run({"goto": p.url("app.localhost", "/.portcullis/")},
                         {"submit": SIGN_OUT_FORM, "fields": fields, "screenshot": "sign-out-refused"})
    assert page.status == 403, f"sign-out {what}:\n{page.describe()}"
    page = s.browser.run({"goto": s.target})
    assert page.url == s.target and page.status == 200, f"the session after a refused sign-out:\n{page.describe()}"


def test_forwarded_host_never_reaches_the_location(people, resolve_localhost):
    p = people
    evil = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
            "Forwarded": "host=evil.example;proto=https", "X-Original-Host": "evil.example"}
    with requests.Session() as jar:
        r = anon(p, "app.localhost", "/some/path", html=True, headers=evil, session=jar)
        assert r.status_code == 302, (r.status_code, r.text[:200])
        seen = []
        for _ in range(4):
            location = r.headers.get("Location", "")
            seen.append(location)
            assert "evil.example" not in location, seen
            if not location.startswith(p.base):
                break
            r = jar.get(location, headers={"Accept": "text/html", **evil}, allow_redirects=False, timeout=20)
        assert is_sign_in(p, seen[0]), seen
        assert any(u.startswith(p.idp.discovery()["authorization_endpoint"]) for u in seen), seen
