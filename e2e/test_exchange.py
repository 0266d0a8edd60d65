"""Token exchange (DESIGN §4 `POST /oauth2/token` RFC 8693, `POST /api/v1/token`) and routes that
take the provider's id_tokens (`bearerTokenFormat: idp_identity_token`), with real id_tokens: a
command-line client signs in at the example provider with authlib (code flow, PKCE S256, the
provider's form filled in by a cookie jar, e2e/idp.py `code_flow_tokens`) and presents the id_token.

One `portcullis dev` and provider for the module (`test_people.people_site`), with
`sessionLifetime: 10m` and three more clients at the provider (`EXTRA_CLIENTS`):

    portcullis-cli        in idp.allowedAudiences
    portcullis-cli-short  in idp.allowedAudiences, id_tokens live 4 s (the expiry cases)
    foreign-app           not listed: its id_tokens are for someone else

Routes: those of test_people.py (`app` alice only, `groups-route` group payments, `denied`),
`idtoken` (http://idtoken.localhost, alice only, `bearerTokenFormat: idp_identity_token`) and
`accesstoken` (http://accesstoken.localhost, alice only, `bearerTokenFormat: idp_access_token`: the
provider's access tokens, checked at its introspection endpoint).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from urllib.parse import quote

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt

from conftest import wait_for
from idp import code_flow_tokens, localhost_names
from test_people import (NS, People, claims_of, people_route, people_site, portcullis_jwks, route_ready,
                         sign_out_cookie, token_header_forms)
from test_programmatic import cb, sign_in_as  # noqa: F401  (`cb`: the script's callback server)
from test_tokens import https_get_json, token_url

pytestmark = pytest.mark.people

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
SESSION_LIFETIME = 600
SHORT_TTL = 4
CLI, SHORT, FOREIGN = "portcullis-cli", "portcullis-cli-short", "foreign-app"
IDTOKEN_HOST = "idtoken.localhost"
ACCESSTOKEN_HOST = "accesstoken.localhost"


@pytest.fixture(scope="module")
def ex(request, portcullis_bin, kubectl_bin, tmp_path_factory):
    loopback = "http://127.0.0.1:8250/callback"  # never called: the client stops at the redirect
    clients = [{"client_id": CLI, "redirect_uris": [loopback]},
               {"client_id": SHORT, "redirect_uris": [loopback], "id_token_ttl": SHORT_TTL},
               {"client_id": FOREIGN, "redirect_uris": [loopback]}]
    with people_site(request.node, portcullis_bin, kubectl_bin, tmp_path_factory.mktemp("exchange"),
                     provider_settings={"extra_clients": clients},
                     settings={"sessionLifetime": f"{SESSION_LIFETIME}s",
                               "idp": {"allowedAudiences": [CLI, SHORT]}}) as p:
        for name, host, format in (("idtoken", IDTOKEN_HOST, "idp_identity_token"),
                                   ("accesstoken", ACCESSTOKEN_HOST, "idp_access_token")):
            route = people_route(name, host, p.dev.echo_url, {"email": {"is": "alice@example.com"}})
            route["spec"]["bearerTokenFormat"] = format
            p.dev.apply_docs(route)
            wait_for(lambda: route_ready(p.dev, name), 30, what=f"route {NS}/{name} Ready")
            with localhost_names():
                wait_for(lambda: requests.get(p.url(host), timeout=10).status_code == 401, 30,
                         what=f"{host} served")
        yield p


@pytest.fixture(scope="module")
def alice_id(ex) -> dict:
    """alice's token response for Portcullis's own client (aud = idp.clientID)."""
    return code_flow_tokens(ex.idp, "alice")


def exchange(p: People, subject_token: str, *, headers: dict | None = None, **form) -> requests.Response:
    """An RFC 8693 request as a form; `None` values are left out."""
    data = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": ID_TOKEN, **form}
    return requests.post(f"{p.base}/oauth2/token", data={k: v for k, v in data.items() if v is not None},
                         headers=headers, timeout=20, allow_redirects=False)


def exchanged(p: People, subject_token: str, **form) -> str:
    r = exchange(p, subject_token, **form)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()["access_token"]


def call(p: People, host: str, headers: dict, path: str = "/api") -> requests.Response:
    return requests.get(p.url(host, path), headers={"Accept": "application/json", **headers}, timeout=20,
                        allow_redirects=False)


def email_on(p: People, host: str, headers: dict) -> str:
    r = call(p, host, headers)
    assert r.status_code == 200, (host, r.status_code, r.text[:300])
    return r.json()["identity"].get("email")


def assert_refused(r: requests.Response, status: int, error: str, what: str) -> None:
    assert r.status_code == status, (what, r.status_code, r.text[:300])
    body = r.json()
    assert body.get("error") == error and body.get("error_description"), (what, body)
    assert "access_token" not in body and "Token" not in body, (what, body)
    assert "no-store" in r.headers.get("Cache-Control", ""), (what, r.headers)


def assert_401(r: requests.Response, what: str) -> None:
    """RFC 6750: 401, a Bearer challenge naming invalid_token, a JSON body, no redirect."""
    assert r.status_code == 401, (what, r.status_code, r.text[:300])
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (what, r.headers)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], (what, r.headers)
    assert r.json().get("error") == "invalid_token", (what, r.text[:300])
    assert "Location" not in r.headers, what


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def until_next_second(after: int) -> None:
    """Wait until the clock's second is past `after` (so a new token's iat and exp are later)."""
    while time.time() < after + 1:
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# RFC 8693 at /oauth2/token
# --------------------------------------------------------------------------------------------


def test_discovery_lists_token_exchange_only_with_an_idp(ex, identity_dev, resolve_localhost):
    for doc in ("openid-configuration", "oauth-authorization-server"):
        meta = requests.get(f"{ex.base}/.well-known/{doc}", timeout=10).json()
        assert EXCHANGE in meta["grant_types_supported"], (doc, meta["grant_types_supported"])
        assert "client_credentials" in meta["grant_types_supported"], meta["grant_types_supported"]
    # `portcullis dev` without an idp: no exchange, and the grant is refused.
    dev = identity_dev
    meta = https_get_json(dev, "/.well-known/openid-configuration")
    assert meta["grant_types_supported"] == ["client_credentials"], meta["grant_types_supported"]
    r = requests.post(token_url(dev), verify=str(dev.ca_path), timeout=10,
                      data={"grant_type": EXCHANGE, "subject_token": "x", "subject_token_type": ID_TOKEN})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", (r.status_code, r.text)
    r = requests.post(f"{dev.issuer}/api/v1/token", verify=str(dev.ca_path), timeout=10, data={"id_token": "x"})
    assert r.status_code == 404, (r.status_code, r.text[:300])


def test_an_id_token_becomes_a_session_token_that_works_in_every_header_form(ex, alice_id, resolve_localhost):
    p = ex
    id_token = alice_id["id_token"]
    id_claims = claims_of(id_token)
    # A standard OAuth client without client authentication (authlib, auth method none).
    with OAuth2Session(client_id=CLI, token_endpoint_auth_method="none") as oauth:
        before = int(time.time())
        answer = oauth.fetch_token(f"{p.base}/oauth2/token", grant_type=EXCHANGE, subject_token=id_token,
                                   subject_token_type=ID_TOKEN)
    assert answer["issued_token_type"] == ACCESS_TOKEN and answer["token_type"] == "Bearer", answer
    token = answer["access_token"]
    # Verified with joserfc against Portcullis's JWKS: a session token for the authenticate URL.
    decoded = jwt.decode(token, portcullis_jwks(p))
    assert decoded.header["typ"] == "portcullis-session+jwt", decoded.header
    claims = decoded.claims
    jwt.JWTClaimsRegistry(leeway=5, iss={"essential": True, "value": p.base},
                          sub={"essential": True, "value": "alice"},
                          email={"essential": True, "value": "alice@example.com"}).validate(claims)
    # The id_token lives an hour, sessionLifetime is 10 minutes: the session ends within it.
    assert claims["exp"] < id_claims["exp"], (claims, id_claims)
    assert before + SESSION_LIFETIME <= claims["exp"] <= int(time.time()) + SESSION_LIFETIME, claims
    assert SESSION_LIFETIME - 5 <= answer["expires_in"] <= SESSION_LIFETIME, answer

    for what, headers in token_header_forms(token, cookie=True).items():
        r = call(p, "app.localhost", headers)
        assert r.status_code == 200, (what, r.status_code, r.text[:300])
        echo = r.json()
        assert echo["identity"].get("email") == "alice@example.com", (what, echo)
        assert token not in json.dumps(echo["headers"]), f"{what}: the session token reached the upstream"
        assert email_on(p, "payments.localhost", headers) == "alice@example.com", what
        assert call(p, "denied.localhost", headers).status_code == 403, what

    # Bob's id_token gives bob's session: refused where bob's browser would be.
    bob = exchanged(p, code_flow_tokens(p.idp, "bob")["id_token"])
    for host in ("app.localhost", "payments.localhost"):
        r = call(p, host, {"Authorization": f"Bearer {bob}"})
        assert r.status_code == 403, (host, r.status_code, r.text[:300])


def test_token_types_and_own_audience_are_accepted(ex, alice_id):
    p = ex
    id_token = alice_id["id_token"]
    for form, issued in [({"requested_token_type": JWT}, JWT),
                         ({"requested_token_type": ACCESS_TOKEN}, ACCESS_TOKEN),
                         ({"subject_token_type": JWT}, ACCESS_TOKEN),
                         ({"audience": p.base}, ACCESS_TOKEN),
                         ({"audience": p.base + "/"}, ACCESS_TOKEN),
                         ({"resource": p.base}, ACCESS_TOKEN),
                         ({"resource": p.base + "/", "audience": p.base}, ACCESS_TOKEN)]:
        r = exchange(p, id_token, **form)
        assert r.status_code == 200, (form, r.status_code, r.text[:300])
        assert r.json()["issued_token_type"] == issued, (form, r.json())
        assert r.headers.get("Cache-Control") == "no-store", (form, r.headers)


def test_one_id_token_is_one_session_and_a_signed_out_one_stays_out(ex, resolve_localhost):
    p = ex
    id_token = code_flow_tokens(p.idp, "alice")["id_token"]
    first, again = exchanged(p, id_token), exchanged(p, id_token)
    assert claims_of(first)["sid"] == claims_of(again)["sid"], (claims_of(first), claims_of(again))
    assert email_on(p, "app.localhost", {"Authorization": f"Bearer {first}"}) == "alice@example.com"

    out = sign_out_cookie(p, "app.localhost", first)
    # On to the provider's end-session endpoint with the id_token as hint, which it takes.
    end = requests.get(out.headers["Location"], allow_redirects=False, timeout=20)
    assert out.headers["Location"].startswith(p.idp.discovery()["end_session_endpoint"]), out.headers
    assert end.status_code == 200 and "logout" in end.text, (end.status_code, end.text[:300])
    for token in (first, again):
        assert_401(call(p, "app.localhost", {"Authorization": f"Bearer {token}"}), "a signed-out session")
    assert_refused(exchange(p, id_token), 400, "invalid_request", "the signed-out session's id_token again")
    # The person is not locked out: a new sign-in's id_token is a new session.
    fresh = exchanged(p, code_flow_tokens(p.idp, "alice")["id_token"])
    assert claims_of(fresh)["sid"] != claims_of(first)["sid"]
    assert email_on(p, "app.localhost", {"Authorization": f"Bearer {fresh}"}) == "alice@example.com"


def test_signing_out_a_cli_clients_session_ends_at_the_provider(ex, resolve_localhost):
    p = ex
    token = exchanged(p, code_flow_tokens(p.idp, "alice", client_id=CLI)["id_token"])
    out = sign_out_cookie(p, "app.localhost", token)
    assert_401(call(p, "app.localhost", {"Authorization": f"Bearer {token}"}), "the signed-out CLI session")
    # Another client's id_token is no hint for ours: the provider would refuse the pair.
    assert "id_token_hint" not in out.headers["Location"], out.headers["Location"]
    end = requests.get(out.headers["Location"], allow_redirects=False, timeout=20)
    assert end.status_code in (200, 302, 303), (out.headers["Location"], end.status_code, end.text[:300])


def test_session_ends_with_the_id_token_and_fresher_ones_end_later(ex, resolve_localhost):
    """portcullis-cli-short's id_tokens live 4 s, less than sessionLifetime: the session's exp is
    the id_token's. After it, the exchange, Pomerium's form and the route taking id_tokens refuse
    the id_token."""
    p = ex
    one = code_flow_tokens(p.idp, "alice", client_id=SHORT)["id_token"]
    s1 = exchanged(p, one)
    assert claims_of(one)["aud"] == SHORT
    assert claims_of(s1)["exp"] == claims_of(one)["exp"], (claims_of(s1), claims_of(one))
    assert email_on(p, IDTOKEN_HOST, {"Authorization": f"Bearer {one}"}) == "alice@example.com"
    until_next_second(claims_of(one)["iat"])
    two = code_flow_tokens(p.idp, "alice", client_id=SHORT)["id_token"]
    s2 = exchanged(p, two)
    assert claims_of(s2)["exp"] == claims_of(two)["exp"] > claims_of(s1)["exp"], (claims_of(s1), claims_of(s2))
    assert claims_of(s2)["sid"] != claims_of(s1)["sid"]
    assert email_on(p, "app.localhost", {"Authorization": f"Bearer {s1}"}) == "alice@example.com"

    until_next_second(claims_of(one)["exp"])
    assert_refused(exchange(p, one), 400, "invalid_request", "an expired id_token")
    assert_401(call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {one}"}), "an expired id_token on idtoken")
    r = requests.post(f"{p.base}/api/v1/token", data={"id_token": one}, timeout=20)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", (r.status_code, r.text[:300])


def test_exchanged_session_is_refused_once_its_id_token_expired(ex, resolve_localhost):
    p = ex
    one = code_flow_tokens(p.idp, "alice", client_id=SHORT)["id_token"]
    session = exchanged(p, one)
    assert email_on(p, "app.localhost", {"Authorization": f"Bearer {session}"}) == "alice@example.com"
    until_next_second(claims_of(session)["exp"])
    assert_401(call(p, "app.localhost", {"Authorization": f"Bearer {session}"}), "a session past its exp")


def test_refused_exchanges_issue_nothing(ex, alice_id, resolve_localhost):
    p = ex
    good = alice_id["id_token"]
    session = exchanged(p, good)
    foreign = code_flow_tokens(p.idp, "alice", client_id=FOREIGN)["id_token"]
    assert claims_of(foreign)["aud"] == FOREIGN
    head, payload, sig = good.split(".")
    forged = dict(claims_of(good), email="bob@other.example")
    subjects = {
        "an id_token for another client of the provider": foreign,
        "a tampered id_token": f"{head}.{b64(forged)}.{sig}",
        "an unsigned (alg none) id_token": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "an id_token with another token's signature": f"{head}.{payload}.{foreign.split('.')[2]}",
        "the provider's access token": alice_id["access_token"],
        "Portcullis's own session token": session,
        "garbage": "not-a-token",
    }
    for what, subject in subjects.items():
        for kind in (ID_TOKEN, JWT):
            assert_refused(exchange(p, subject, subject_token_type=kind), 400, "invalid_request", what)

    cli_secret = next(c["client_secret"] for c in p.idp.extra_clients if c["client_id"] == CLI)
    basic = "Basic " + base64.b64encode(f"{CLI}:{cli_secret}".encode()).decode()
    requests_with_good = {
        "Basic client authentication": ({"headers": {"Authorization": basic}}, 400, "invalid_request"),
        "client_secret": ({"client_id": CLI, "client_secret": cli_secret}, 400, "invalid_request"),
        "an actor_token": ({"actor_token": good, "actor_token_type": ID_TOKEN}, 400, "invalid_request"),
        "a scope": ({"scope": "openid"}, 400, "invalid_scope"),
        "another audience": ({"audience": "https://other.example"}, 400, "invalid_target"),
        "a route as resource": ({"resource": p.url("app.localhost", "/")}, 400, "invalid_target"),
        "our audience and another": ({"audience": p.base, "resource": "https://other.example"}, 400,
                                     "invalid_target"),
        "subject_token_type access_token": ({"subject_token_type": ACCESS_TOKEN}, 400, "invalid_request"),
        "requested_token_type refresh_token": (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, 400, "invalid_request"),
    }
    for what, (form, status, error) in requests_with_good.items():
        assert_refused(exchange(p, good, **form), status, error, what)

    # Nothing works afterwards that did not before; what did still does.
    for what, subject in subjects.items():
        if subject is session:
            continue
        for host in ("app.localhost", IDTOKEN_HOST):
            r = call(p, host, {"Authorization": f"Bearer {subject}"})
            assert r.status_code == 401, (what, host, r.status_code)
            r = call(p, host, {"Authorization": f"Pomerium {subject}"})
            assert r.status_code == 401, (what, host, r.status_code)
    assert email_on(p, "app.localhost", {"Authorization": f"Bearer {session}"}) == "alice@example.com"
    assert claims_of(exchanged(p, good))["sid"] == claims_of(session)["sid"]


def test_allowed_audiences(ex, resolve_localhost):
    """An id_token of portcullis-cli (idp.allowedAudiences) is exchanged and read on the idtoken
    route; one of foreign-app is refused on both."""
    p = ex
    cli = code_flow_tokens(p.idp, "alice", client_id=CLI)["id_token"]
    assert claims_of(cli)["aud"] == CLI
    token = exchanged(p, cli)
    assert email_on(p, "app.localhost", {"X-Pomerium-Authorization": token}) == "alice@example.com"
    assert email_on(p, IDTOKEN_HOST, {"Authorization": f"Bearer {cli}"}) == "alice@example.com"
    foreign = code_flow_tokens(p.idp, "alice", client_id=FOREIGN)["id_token"]
    assert_refused(exchange(p, foreign), 400, "invalid_request", "foreign-app's id_token")
    assert_401(call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {foreign}"}), "foreign-app's id_token")


# --------------------------------------------------------------------------------------------
# Pomerium 2019: POST /api/v1/token
# --------------------------------------------------------------------------------------------


def test_pomerium_api_v1_token(ex, alice_id, resolve_localhost):
    p = ex
    url = f"{p.base}/api/v1/token"
    r = requests.post(url, data={"id_token": alice_id["id_token"]}, timeout=20)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"Token", "Expiry"}, body
    expiry = datetime.fromisoformat(body["Expiry"].replace("Z", "+00:00"))
    assert int(expiry.timestamp()) == claims_of(body["Token"])["exp"], (body["Expiry"], claims_of(body["Token"]))
    assert email_on(p, "app.localhost", {"Authorization": f"Pomerium {body['Token']}"}) == "alice@example.com"

    foreign = code_flow_tokens(p.idp, "bob", client_id=FOREIGN)["id_token"]
    for what, token in {"foreign-app's id_token": foreign, "garbage": "not-a-token",
                        "the provider's access token": alice_id["access_token"]}.items():
        r = requests.post(url, data={"id_token": token}, timeout=20)
        assert r.status_code == 401, (what, r.status_code, r.text[:300])
        assert r.json()["error"] == "invalid_token" and r.json()["error_description"], (what, r.text)
        challenge = r.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge, (what, r.headers)
    r = requests.post(url, data={"other": "x"}, timeout=20)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", (r.status_code, r.text)
    r = requests.get(url, params={"id_token": alice_id["id_token"]}, timeout=20)
    assert r.status_code == 405 and "POST" in r.headers.get("Allow", ""), (r.status_code, r.headers)
    r = requests.post(url, json={"id_token": alice_id["id_token"]}, timeout=20)
    assert r.status_code == 415, (r.status_code, r.text[:300])


# --------------------------------------------------------------------------------------------
# bearerTokenFormat: idp_identity_token
# --------------------------------------------------------------------------------------------


def test_route_taking_the_providers_id_tokens(ex, alice_id, resolve_localhost):
    p = ex
    id_token = alice_id["id_token"]
    r = call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {id_token}"})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    echo = r.json()
    assert echo["identity"].get("email") == "alice@example.com", echo
    assert "authorization" not in {k.lower() for k in echo["headers"]}, echo["headers"]
    assert id_token not in json.dumps(echo), "the id_token reached the upstream"
    # bob's id_token is his: the route's policy refuses him.
    bob = code_flow_tokens(p.idp, "bob")["id_token"]
    assert call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {bob}"}).status_code == 403
    # Portcullis's tokens still ride in the other forms; `Authorization: Bearer` is the provider's.
    session = exchanged(p, id_token)
    for what, headers in token_header_forms(session, bearer=False, cookie=True).items():
        assert email_on(p, IDTOKEN_HOST, headers) == "alice@example.com", what
    assert_401(call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {session}"}),
               "a session token as Bearer where Bearer is the provider's id_token")
    # Elsewhere (default format) the provider's id_token is no credential, whatever the header.
    for headers in ({"Authorization": f"Bearer {id_token}"}, {"X-Pomerium-Authorization": id_token}):
        assert_401(call(p, "app.localhost", headers), "the provider's id_token on a default route")
    # On idtoken, an id_token sent in our own header is not read as one.
    assert_401(call(p, IDTOKEN_HOST, {"X-Portcullis-Authorization": id_token}),
               "the provider's id_token in X-Portcullis-Authorization")


def test_route_taking_the_providers_access_tokens(ex, alice_id, resolve_localhost):
    """The provider's (opaque) access tokens, introspected as Portcullis's client: alice's for
    Portcullis's client and for a client in idp.allowedAudiences pass, with her claims from
    userinfo; a foreign client's, her id_token or refresh token, and garbage do not."""
    p = ex
    access = alice_id["access_token"]
    assert access.count(".") != 2, "the example provider's access tokens are opaque"
    r = call(p, ACCESSTOKEN_HOST, {"Authorization": f"Bearer {access}"})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    echo = r.json()
    assert echo["identity"].get("email") == "alice@example.com", echo
    assert "authorization" not in {k.lower() for k in echo["headers"]}, echo["headers"]
    assert access not in json.dumps(echo), "the access token reached the upstream"
    # The route's policy judges the person behind the token.
    bob = code_flow_tokens(p.idp, "bob")["access_token"]
    assert call(p, ACCESSTOKEN_HOST, {"Authorization": f"Bearer {bob}"}).status_code == 403
    # A client listed in allowedAudiences; a foreign one is refused.
    cli = code_flow_tokens(p.idp, "alice", client_id=CLI)["access_token"]
    assert email_on(p, ACCESSTOKEN_HOST, {"Authorization": f"Bearer {cli}"}) == "alice@example.com"
    foreign = code_flow_tokens(p.idp, "alice", client_id=FOREIGN)["access_token"]
    refused = {
        "a foreign client's access token": foreign,
        "the id_token": alice_id["id_token"],
        "the refresh token": alice_id.get("refresh_token") or "no-refresh-token",
        "garbage": "not-a-token-the-provider-issued",
        "a Portcullis session token": exchanged(p, alice_id["id_token"]),
    }
    for what, token in refused.items():
        assert_401(call(p, ACCESSTOKEN_HOST, {"Authorization": f"Bearer {token}"}), what)
    # Portcullis's own tokens still work in the other forms; the access token is nothing elsewhere.
    session = refused["a Portcullis session token"]
    assert email_on(p, ACCESSTOKEN_HOST, {"X-Pomerium-Authorization": session}) == "alice@example.com"
    assert_401(call(p, "app.localhost", {"Authorization": f"Bearer {access}"}),
               "the provider's access token on a default route")
    assert_401(call(p, IDTOKEN_HOST, {"Authorization": f"Bearer {access}"}),
               "the provider's access token where Bearer is an id_token")


# --------------------------------------------------------------------------------------------
# a Pomerium-style script addressing the route without a port
# --------------------------------------------------------------------------------------------


def test_pomerium_script_with_a_port_less_route_url(ex, cb):
    """The script knows the route as http://app.localhost (port 80, as behind a load balancer);
    its connections reach the http listener with `Host: app.localhost`."""
    p = ex
    with localhost_names(ports={80: p.port}):
        r = requests.get(f"http://app.localhost/.pomerium/api/v1/login?pomerium_redirect_uri={quote(cb.url, safe='')}",
                         timeout=20, allow_redirects=False)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        url = r.text.strip()
        assert url.startswith(f"{p.base}/.portcullis/sign_in?"), url
        done = sign_in_as(p, url)
        assert done.status_code == 200 and done.text == "signed in", (done.status_code, done.url, done.text[:300])
        token = cb.query["pomerium_jwt"][0]
        r = requests.get("http://app.localhost/api", headers={"Authorization": f"Pomerium {token}"}, timeout=20)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        assert r.json()["identity"].get("email") == "alice@example.com", r.json()
    # The route's assertion names the route's URL as configured, without a port.
    claims = jwt.decode(r.json()["headers"]["x-portcullis-jwt-assertion"], portcullis_jwks(p)).claims
    assert claims["aud"] == "http://app.localhost", claims
