"""The example OpenID Connect provider (examples/oidc-provider) and the browser harness, checked
together without Portcullis: a tiny relying party (Python's http.server + authlib + joserfc)
signs people in through headless Chromium with the authorization-code flow, PKCE S256, state and
nonce, exactly as Portcullis will (DESIGN §4 `/oauth2/callback`, §6).

What it shows: the provider's discovery document; alice's and bob's id_token claims (email,
email_verified, name, groups) with the nonce; a refresh token on every code grant that works;
lifetimes from ID_TOKEN_TTL / ACCESS_TOKEN_TTL; unknown users and wrong passwords refused at the
sign-in page; PKCE required; unregistered redirect URIs refused; Cancel reaching the client as
access_denied; end_session redirecting to the registered post-logout URI and ending the provider's
session. It also checks the harness itself: redirect chains, statuses, cookie flags, screenshots,
form submission with changed fields, and `*.localhost` names for `requests` (`resolve_localhost`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from browser import Page
from idp import PASSWORD, USERS, OidcProvider

SCOPE = "openid email profile groups"


# --------------------------------------------------------------------------------------------
# a minimal relying party
# --------------------------------------------------------------------------------------------


@dataclass
class RelyingParty:
    """An OIDC client on http://rp.localhost:<port>: `/login` starts a sign-in, `/callback`
    finishes it (state, iss, code exchange with client_secret_basic + the PKCE verifier, id_token
    verified against the provider's JWKS with the nonce), `/signed-out` is the post-logout URI.
    Finished sign-ins land in `signed_in` (by state), refusals in `errors`."""

    port: int
    provider: OidcProvider | None = None
    pending: dict[str, dict] = field(default_factory=dict)
    signed_in: dict[str, dict] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    signed_out: list[dict] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://rp.localhost:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/callback"

    @property
    def post_logout_uri(self) -> str:
        return f"{self.base}/signed-out"

    def session(self) -> OAuth2Session:
        assert self.provider is not None
        return OAuth2Session(self.provider.client_id, self.provider.client_secret, scope=SCOPE,
                             redirect_uri=self.redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic")

    def authorization_url(self) -> tuple[str, str]:
        """A fresh authorization request: (URL, state)."""
        assert self.provider is not None
        meta = self.provider.discovery()
        state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        with self.session() as s:
            url, _ = s.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                                code_verifier=verifier)
        self.pending[state] = {"nonce": nonce, "verifier": verifier}
        return url, state

    def finish(self, params: dict[str, str]) -> dict:
        assert self.provider is not None
        meta = self.provider.discovery()
        if "error" in params:
            raise ValueError(f"provider error {params['error']}: {params.get('error_description')}")
        pending = self.pending.pop(params.get("state", ""), None)
        if pending is None:
            raise ValueError("unknown state")
        if params.get("iss") != self.provider.issuer:  # RFC 9207
            raise ValueError(f"iss {params.get('iss')!r}")
        with self.session() as s:
            token = s.fetch_token(meta["token_endpoint"], grant_type="authorization_code", code=params["code"],
                                  code_verifier=pending["verifier"])
        claims = verify_id_token(self.provider, token["id_token"], nonce=pending["nonce"])
        return {"token": dict(token), "claims": claims}


def verify_id_token(provider: OidcProvider, id_token: str, *, nonce: str | None) -> dict:
    keys = KeySet.import_key_set(requests.get(provider.discovery()["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(id_token, keys, algorithms=["RS256"])
    rules: dict = {"iss": {"essential": True, "value": provider.issuer},
                   "aud": {"essential": True, "value": provider.client_id},
                   "sub": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True}}
    if nonce is not None:
        rules["nonce"] = {"essential": True, "value": nonce}
    jwt.JWTClaimsRegistry(leeway=5, **rules).validate(decoded.claims)
    return decoded.claims


class _Handler(BaseHTTPRequestHandler):
    rp: RelyingParty

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, status: int, title: str, body: str, headers: dict | None = None):
        data = f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        rp = self.rp
        if url.path == "/login":
            location, _ = rp.authorization_url()
            self._send(302, "redirect", "", {"Location": location})
        elif url.path == "/callback":
            try:
                result = rp.finish(params)
            except Exception as exc:  # noqa: BLE001 - shown to the test as a refusal
                rp.errors.append({**params, "exception": repr(exc)})
                self._send(400, "RP refused", f"<p id=error>{type(exc).__name__}</p>")
                return
            rp.signed_in[params["state"]] = result
            self._send(200, "RP signed in", f"<p id=who>{result['claims'].get('email')}</p>")
        elif url.path == "/signed-out":
            rp.signed_out.append(params)
            self._send(200, "RP signed out", "<p id=bye>signed out</p>")
        else:
            self._send(404, "not found", "")


@contextlib.contextmanager
def relying_party(idp_factory, **provider_settings) -> Iterator[RelyingParty]:
    """A relying party on a free port and the example provider configured for it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    party = RelyingParty(port=server.server_address[1])
    server.RequestHandlerClass = type("Handler", (_Handler,), {"rp": party})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        party.provider = idp_factory(redirect_uris=[party.redirect_uri],
                                     post_logout_redirect_uris=[party.post_logout_uri], **provider_settings)
        yield party
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rp(idp_factory):
    with relying_party(idp_factory) as party:
        yield party


def sign_in(b, rp: RelyingParty, user: str) -> tuple[Page, dict]:
    """Start at the RP, sign in as `user` at the provider; the page and the RP's finished sign-in."""
    page = b.run({"goto": f"{rp.base}/login", "screenshot": "1-sign-in-page"})
    assert page.url.startswith(f"{rp.provider.issuer}/interaction/"), page.describe()
    assert page.status == 200 and page.title == "Sign in", page.describe()
    page = b.run({"login": user, "screenshot": "2-back-at-rp"})
    assert page.url.startswith(f"{rp.redirect_uri}?"), page.describe()
    assert page.status == 200 and page.title == "RP signed in", page.describe()
    state = parse_qs(urlsplit(page.url).query)["state"][0]
    assert state in rp.signed_in, (rp.errors, page.describe())
    return page, rp.signed_in[state]


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_discovery(rp):
    meta = rp.provider.discovery()
    assert meta["issuer"] == rp.provider.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "code" in meta["response_types_supported"]
    assert {"openid", "email", "profile", "groups"} <= set(meta["scopes_supported"])
    assert {"sub", "email", "email_verified", "name", "groups"} <= set(meta["claims_supported"])
    assert meta["end_session_endpoint"].startswith(rp.provider.issuer)
    assert meta["authorization_response_iss_parameter_supported"] is True


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_code_flow_claims_and_refresh(rp, browser_factory, user):
    b = browser_factory(user)
    page, result = sign_in(b, rp, user)
    assert page.text.strip() == USERS[user]["email"]
    # A second sign-in in the same browser skips the form (the provider's session); the harness
    # reports each hop: RP -> authorization endpoint -> the RP's callback with code, state, iss.
    again = b.run({"goto": f"{rp.base}/login"})
    assert again.url.startswith(f"{rp.redirect_uri}?") and again.status == 200, again.describe()
    assert len(rp.signed_in) == 2
    hops = again.hops()
    assert hops[0] == (302, f"{rp.base}/login"), hops
    assert hops[1][0] in (302, 303) and hops[1][1].startswith(rp.provider.discovery()["authorization_endpoint"]), hops
    assert hops[-1][0] == 200 and hops[-1][1].startswith(rp.redirect_uri), hops

    claims = result["claims"]
    want = USERS[user]
    assert claims["sub"] == want["sub"]
    assert claims["email"] == want["email"] and claims["email_verified"] is True
    assert claims["groups"] == want["groups"]
    assert claims.get("name") == want.get("name")
    token = result["token"]
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"].split()) == set(SCOPE.split()), token["scope"]
    assert token.get("refresh_token"), f"no refresh_token in {sorted(token)}"

    # The refresh token works: new tokens, the same person.
    meta = rp.provider.discovery()
    with rp.session() as s:
        refreshed = s.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    renewed = verify_id_token(rp.provider, refreshed["id_token"], nonce=None)
    assert renewed["sub"] == want["sub"] and renewed["email"] == want["email"]
    # ... and the access token is good at userinfo.
    info = requests.get(meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {refreshed['access_token']}"},
                        timeout=10)
    assert info.status_code == 200, info.text
    assert info.json()["email"] == want["email"]


def test_token_lifetimes(idp_factory, browser_factory):
    """ID_TOKEN_TTL / ACCESS_TOKEN_TTL reach the tokens (for Portcullis's refresh tests)."""
    with relying_party(idp_factory, id_token_ttl=45, access_token_ttl=30) as party:
        _, result = sign_in(browser_factory("alice"), party, "alice")
    assert result["token"]["expires_in"] == 30, result["token"]
    assert result["claims"]["exp"] - result["claims"]["iat"] == 45, result["claims"]


@pytest.mark.parametrize("login,password", [("mallory", PASSWORD), ("alice", "wrong"), ("ALICE", PASSWORD)])
def test_unknown_user_or_wrong_password_refused(rp, browser_factory, login, password):
    b = browser_factory("b")
    page = b.run({"goto": f"{rp.base}/login"}, {"login": {"user": login, "password": password},
                                               "screenshot": "refused-form"})
    assert page.status == 401, page.describe()
    assert page.url.startswith(f"{rp.provider.issuer}/interaction/"), page.describe()
    assert "Invalid login or password." in page.text
    assert not rp.signed_in and not rp.errors
    # The form is still there and a right answer still works afterwards.
    page = b.run({"login": "alice"})
    assert page.url.startswith(f"{rp.redirect_uri}?") and page.status == 200, page.describe()
    assert len(rp.signed_in) == 1


def test_cancel_reaches_the_client_as_access_denied(rp, browser_factory):
    b = browser_factory("b")
    page = b.run({"goto": f"{rp.base}/login"}, {"click": "#cancel", "screenshot": "after-cancel"})
    assert page.url.startswith(f"{rp.redirect_uri}?") and page.status == 400, page.describe()
    assert rp.errors and rp.errors[0]["error"] == "access_denied", rp.errors
    assert not rp.signed_in


def test_pkce_required_and_redirect_uris_exact(rp):
    meta = rp.provider.discovery()
    base = {"client_id": rp.provider.client_id, "response_type": "code", "scope": SCOPE,
            "redirect_uri": rp.redirect_uri, "state": "s1", "nonce": "n1"}
    # No code_challenge: refused back to the (registered) client.
    r = requests.get(meta["authorization_endpoint"], params=base, allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303), r.text[:300]
    q = parse_qs(urlsplit(r.headers["Location"]).query)
    assert r.headers["Location"].startswith(rp.redirect_uri) and q["error"] == ["invalid_request"], q
    # plain is not S256.
    r = requests.get(meta["authorization_endpoint"], params={**base, "code_challenge": "a" * 43,
                                                            "code_challenge_method": "plain"},
                     allow_redirects=False, timeout=10)
    q = parse_qs(urlsplit(r.headers.get("Location", "")).query)
    assert q.get("error") == ["invalid_request"], (r.status_code, r.headers, r.text[:300])
    # An unregistered redirect URI is never redirected to.
    for bad in ("http://evil.example/callback", f"{rp.redirect_uri}/x", f"{rp.base}/callback?x=1"):
        r = requests.get(meta["authorization_endpoint"],
                         params={**base, "redirect_uri": bad, "code_challenge": "a" * 43,
                                 "code_challenge_method": "S256"}, allow_redirects=False, timeout=10)
        assert r.status_code == 400 and "Location" not in r.headers, (bad, r.status_code, r.headers)


def test_end_session(rp, browser_factory):
    b = browser_factory("b")
    _, result = sign_in(b, rp, "alice")
    meta = rp.provider.discovery()
    session = b.run({"cookies": rp.provider.issuer})
    assert session.cookie("_session", "127.0.0.1"), session.cookies
    url = meta["end_session_endpoint"] + "?" + urlencode({
        "id_token_hint": result["token"]["id_token"], "post_logout_redirect_uri": rp.post_logout_uri,
        "state": "bye-1"})
    page = b.run({"goto": url, "screenshot": "3-after-end-session"})
    assert page.url == f"{rp.post_logout_uri}?state=bye-1" and page.status == 200, page.describe()
    assert rp.signed_out == [{"state": "bye-1"}]
    # The provider's session is over: the next sign-in asks again.
    page = b.run({"goto": f"{rp.base}/login"})
    assert page.url.startswith(f"{rp.provider.issuer}/interaction/") and page.title == "Sign in", page.describe()
    # Without an id_token_hint the provider asks first; "Yes" signs out.
    page = b.run({"login": "bob"}, {"goto": meta["end_session_endpoint"]})
    assert page.status == 200 and "Sign out" in page.title, page.describe()
    page = b.run({"click": "#logout-yes"})
    assert page.status == 200 and page.title == "Signed out", page.describe()
    # An unregistered post-logout URI is refused.
    r = requests.get(meta["end_session_endpoint"], params={
        "client_id": rp.provider.client_id, "post_logout_redirect_uri": "http://evil.example/"},
        allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "Location" not in r.headers, (r.status_code, r.headers)


def test_harness_reports_cookies_headers_and_screenshots(rp, browser_factory):
    b = browser_factory("b")
    page = b.run({"goto": f"{rp.base}/login", "screenshot": "sign-in-page"})
    # Cookie flags as the browser stored them, and the raw Set-Cookie lines of the redirect.
    interaction = page.cookie("_interaction", "127.0.0.1")
    assert interaction and interaction["httpOnly"] is True and interaction["secure"] is False
    assert interaction["sameSite"] == "Lax", interaction
    auth_hop = next(n for n in page.navigations if n["url"].startswith(rp.provider.discovery()["authorization_endpoint"]))
    assert any(c.startswith("_interaction=") and "httponly" in c.lower() for c in auth_hop["setCookies"]), auth_hop
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert all(Path(p).is_file() and Path(p).stat().st_size > 1000 for p in page.screenshots), page.screenshots
    # query: the form as a person would see it.
    q = b.run({"query": "#login-form input"}).steps[0]["elements"]
    assert [(e["attributes"]["name"], e["attributes"]["type"]) for e in q] == [("login", "text"), ("password", "password")]
    # submit with changed fields (what the CSRF tests do with Portcullis's sign-out form).
    page = b.run({"submit": "#login-form", "fields": {"login": "alice", "password": PASSWORD}})
    assert page.url.startswith(f"{rp.redirect_uri}?") and page.status == 200, page.describe()
    # A failed step reports the error, a screenshot, and the page it failed on.
    page = b.run({"click": "#does-not-exist", "timeout": 500}, check=False)
    assert not page.ok and "does-not-exist" in page.error and page.screenshots, page.raw
    # evaluate and text
    assert b.run({"evaluate": "document.title"}).steps[0]["value"] == "RP signed in"
    assert b.run({"text": "#who"}).steps[0]["text"] == "alice@example.com"


def test_requests_resolves_localhost_names(rp, resolve_localhost):
    """`resolve_localhost` lets a plain `requests.Session` use the RP's real host name, with its
    cookie jar keyed by that name."""
    with requests.Session() as s:
        r = s.get(f"{rp.base}/login", allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["Location"].startswith(rp.provider.issuer)
        r = s.get(r.headers["Location"], timeout=10)  # the provider's sign-in page, cookies kept
        assert r.status_code == 200 and r.url.startswith(f"{rp.provider.issuer}/interaction/")
        action = r.url + "/login"
        r = s.post(action, data={"login": "bob", "password": PASSWORD}, timeout=10)
        assert r.status_code == 200 and r.url.startswith(f"{rp.redirect_uri}?"), (r.status_code, r.url, r.text[:300])
        assert r.text.count("bob@other.example") == 1
    assert json.dumps(list(rp.signed_in.values())[0]["claims"]["groups"]) == "[]"
