"""Machine-to-machine tokens end to end: a ServiceAccountCredential applied with real kubectl
becomes a Secret, and standard OAuth 2.0 clients get RFC 9068 access tokens with it from the token
endpoint of `portcullis dev` (DESIGN §3 generated Secret, §4 identity surface; SECURITY.md "Token
endpoint" and "Tokens and JWTs").

Clients: Python `authlib` (client_secret_basic and client_secret_post), Node `openid-client` 6
(OIDC and RFC 8414 discovery over the https listener, trusting the dev CA), `curl` (Basic, form
fields, the authentik form, malformed requests, a guesser on another loopback address) and Node's
built-in HTTP/2 client. Every token is verified with `joserfc` against the served JWKS. Rotation
is driven with `kubectl annotate`, tampering with `kubectl patch` and `kubectl delete`, spec
changes with `kubectl patch`.

Every test uses `identity_dev` (conftest): the issuer is `https://localhost:<https port>`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from conftest import DevServer, HttpResult, namespace, wait_for

NS = "e2e-tokens"
BOT = "billing-bot"
AUDIENCE = "portcullis"  # the default accessTokenAudience
TTL = 15 * 60  # the credential's accessTokenTTL below
OVERLAP = 2 * 3600  # its rotation.overlap
SCOPES = ["route:billing-api", "route:reports"]
CLAIMS = {"team": "payments", "tier": "gold"}
SECRET_RE = re.compile(r"^pcs_[A-Za-z0-9_-]{43}$")
NODE_DIR = Path(__file__).resolve().parent / "node"

# The claims an access token carries: RFC 9068 §2.2, plus the credential's own claims.
TOKEN_CLAIMS = {"iss", "sub", "aud", "exp", "iat", "jti", "client_id"}


def credential(name: str = BOT, **spec) -> dict:
    body = {
        "scopes": SCOPES,
        "accessTokenTTL": "15m",
        "rotation": {"every": "720h", "overlap": "2h"},
        "claims": CLAIMS,
    }
    body.update(spec)
    return {"apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


# --------------------------------------------------------------------------------------------
# Kubernetes side: the credential and its Secret, through kubectl
# --------------------------------------------------------------------------------------------


def read_secret(dev: DevServer, name: str) -> tuple[dict, dict[str, str]] | None:
    """`kubectl get secret -o json`: the object and its decoded data, or None when not found."""
    cp = dev.kubectl("get", "secret", name, "-n", NS, "-o", "json", check=False)
    if cp.returncode != 0:
        assert "NotFound" in cp.stderr or "not found" in cp.stderr, cp.stderr
        return None
    obj = json.loads(cp.stdout)
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return obj, data


def wait_secret(dev: DevServer, name: str = f"{BOT}-oauth", *, other_than: tuple[str, ...] = (),
                timeout: float = 30) -> tuple[dict, dict[str, str]]:
    """Wait for the Secret to hold a `client_secret` that is none of `other_than`."""
    def ready():
        found = read_secret(dev, name)
        if found and found[1].get("client_secret") and found[1]["client_secret"] not in other_than:
            return found
        return None

    return wait_for(ready, timeout, what=f"Secret {NS}/{name} with a new client_secret")


def apply_credential(dev: DevServer, *docs: dict) -> tuple[dict, dict[str, str]]:
    """Namespace + credential(s) with kubectl; returns the first credential's Secret."""
    dev.apply_docs(namespace(NS), *(docs or (credential(),)))
    first = (docs or (credential(),))[0]
    name = first["spec"].get("secretName") or f"{first['metadata']['name']}-oauth"
    return wait_secret(dev, name)


def describe_sac(dev: DevServer, name: str, *needles: str) -> str:
    out = dev.kubectl("describe", "sac", name, "-n", NS).stdout
    missing = [n for n in needles if n not in out]
    assert not missing, f"missing {missing} in `kubectl describe sac {name}`:\n{out}"
    return out


def sac_condition(dev: DevServer, name: str, type_: str) -> dict | None:
    obj = dev.get_json("sac", name, "-n", NS)
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


# --------------------------------------------------------------------------------------------
# HTTP side
# --------------------------------------------------------------------------------------------


def token_url(dev: DevServer) -> str:
    return f"{dev.issuer}/oauth2/token"


def https_get_json(dev: DevServer, path: str) -> dict:
    r = requests.get(f"{dev.issuer}{path}", verify=str(dev.ca_path), timeout=10)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    return r.json()


def curl(dev: DevServer, *args: str, url: str | None = None) -> HttpResult:
    """One curl request to the token endpoint (or `url`), over https with the dev CA. Returns the
    status, the headers of the final response (lower-case names) and the body."""
    port = urlsplit(dev.issuer).port
    out = dev.work_dir / f"curl-{secrets.token_hex(4)}"
    cmd = ["curl", "-sS", "--max-time", "20", "--cacert", str(dev.ca_path),
           "--resolve", f"localhost:{port}:127.0.0.1",
           "-D", f"{out}.headers", "-o", f"{out}.body", "-w", "%{http_code}",
           *args, url or token_url(dev)]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"curl exited {cp.returncode}: {cp.stderr}\n{' '.join(cmd)}"
    raw = Path(f"{out}.headers").read_text(errors="replace")
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.startswith("HTTP/")]
    headers: dict[str, str] = {}
    for line in blocks[-1].splitlines()[1:] if blocks else []:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return HttpResult(int(cp.stdout.strip()), headers, Path(f"{out}.body").read_bytes())


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


CC = ["--data-urlencode", "grant_type=client_credentials"]


def assert_token_response(r: HttpResult, what: str) -> dict:
    assert r.status == 200, f"{what}: HTTP {r.status} {r.body[:500]!r}"
    assert r.headers.get("content-type", "").startswith("application/json"), (what, r.headers)
    assert "no-store" in r.headers.get("cache-control", ""), (what, r.headers)
    body = r.json()
    assert body["token_type"].lower() == "bearer", (what, body)
    assert body["expires_in"] == TTL, (what, body)
    return body


def assert_oauth_error(r: HttpResult, status: int, code: str, what: str) -> dict:
    assert r.status == status, f"{what}: expected HTTP {status}, got {r.status} {r.body[:500]!r}"
    assert r.headers.get("content-type", "").startswith("application/json"), (what, r.headers)
    assert "no-store" in r.headers.get("cache-control", ""), (what, r.headers)
    body = r.json()
    assert body.get("error") == code, f"{what}: expected error {code}, got {body}"
    assert isinstance(body.get("error_description"), str) and body["error_description"].strip(), (what, body)
    if status == 401:
        assert r.headers.get("www-authenticate", "").lower().startswith("basic"), (what, r.headers)
    return body


# --------------------------------------------------------------------------------------------
# token verification against the served JWKS
# --------------------------------------------------------------------------------------------


def verify_access_token(dev: DevServer, token: str, *, client_id: str, name: str = BOT,
                        scope: str | None = None, claims: dict | None = None, ttl: int = TTL) -> dict:
    """Verify `token` with joserfc against the served JWKS and check every RFC 9068 claim."""
    jwks = https_get_json(dev, "/.well-known/jwks.json")
    keys = KeySet.import_key_set(jwks)
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    header, c = decoded.header, decoded.claims
    assert header.get("typ") == "at+jwt", header
    assert header.get("alg") == "ES256", header
    assert header.get("kid") in {k.get("kid") for k in jwks["keys"]}, (header, jwks)
    jwt.JWTClaimsRegistry(
        leeway=5,
        iss={"essential": True, "value": dev.issuer},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True, "value": f"serviceaccount:{NS}/{name}"},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(c)
    assert c["aud"] == AUDIENCE, c
    assert c["client_id"] == client_id, c
    assert c["exp"] - c["iat"] == ttl, c
    assert abs(c["iat"] - time.time()) < 60, c
    want = dict(CLAIMS if claims is None else claims)
    for k, v in want.items():
        assert c.get(k) == v, f"claim {k}: {c.get(k)!r} != {v!r} in {c}"
    expected_names = TOKEN_CLAIMS | set(want) | ({"scope"} if scope is not None else set())
    assert set(c) == expected_names, f"unexpected claim set {sorted(c)}; want {sorted(expected_names)}"
    if scope is not None:
        assert c["scope"] == scope, c
    # The check above is real: the same token with a changed payload does not verify.
    head, payload, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["sub"] = "serviceaccount:kube-system/admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{head}.{forged_payload}.{sig}", keys, algorithms=["ES256"])
    return c


ALL_SCOPES = " ".join(f"route:{NS}/{s.split(':', 1)[1]}" for s in SCOPES)  # as granted: normalized


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_credential_secret_has_the_documented_shape(identity_dev: DevServer):
    dev = identity_dev
    taken = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "taken", "namespace": NS},
             "type": "Opaque", "stringData": {"client_secret": "mine"}}
    obj, data = apply_credential(dev, credential(), credential("custom", secretName="custom-oauth"))
    dev.apply_docs(taken, credential("squatter", secretName="taken"))

    sac = dev.get_json("sac", BOT, "-n", NS)
    assert set(data) == {"client_id", "client_secret", "token_url", "issuer"}, sorted(data)
    assert SECRET_RE.match(data["client_secret"]), "client_secret is not pcs_ + 43 base64url characters"
    assert data["issuer"] == dev.issuer
    assert data["token_url"] == token_url(dev)
    assert obj["type"] == "Opaque"
    assert obj["metadata"]["labels"]["portcullis.dev/credential"] == BOT
    owners = obj["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owners] == [
        ("ServiceAccountCredential", BOT, sac["metadata"]["uid"], True)], owners

    status = wait_for(lambda: (s := dev.get_json("sac", BOT, "-n", NS).get("status") or {})
                      .get("clientId") and s, 30, what="status.clientId")
    assert status["clientId"] == data["client_id"]
    assert status["secretName"] == f"{BOT}-oauth"
    ready = wait_for(lambda: sac_condition(dev, BOT, "Ready"), 30, what="Ready condition")
    assert ready["status"] == "True", ready
    describe_sac(dev, BOT, "SecretIssued")
    table = dev.kubectl("get", "sac", "-n", NS, BOT, "--no-headers").stdout.split()
    assert table[:4] == [BOT, data["client_id"], f"{BOT}-oauth", "True"], table

    # spec.secretName names the Secret; each credential has its own client and secret.
    _, custom = wait_secret(dev, "custom-oauth")
    assert custom["client_id"] != data["client_id"] and custom["client_secret"] != data["client_secret"]
    # A Secret the credential does not own is never overwritten.
    cond = wait_for(lambda: (c := sac_condition(dev, "squatter", "Ready")) and c["status"] == "False" and c,
                    30, what="squatter Ready=False")
    assert cond["reason"] == "SecretConflict", cond
    _, still = read_secret(dev, "taken")
    assert still == {"client_secret": "mine"}, "a Secret not owned by the credential was changed"


def test_discovery_documents_and_jwks(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    oauth = https_get_json(dev, "/.well-known/oauth-authorization-server")
    oidc = https_get_json(dev, "/.well-known/openid-configuration")
    for doc in (oauth, oidc):
        assert doc["issuer"] == dev.issuer == data["issuer"], doc
        assert doc["token_endpoint"] == data["token_url"], doc
        assert doc["jwks_uri"] == f"{dev.issuer}/.well-known/jwks.json", doc
        assert "client_credentials" in doc["grant_types_supported"], doc
        assert {"client_secret_basic", "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"]), doc
    jwks = https_get_json(dev, "/.well-known/jwks.json")
    assert jwks["keys"], jwks
    for key in jwks["keys"]:
        assert key.get("kid"), key
        assert not ({"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)), f"private material in the JWKS: {sorted(key)}"
    assert any(k.get("kty") == "EC" and k.get("crv") == "P-256" for k in jwks["keys"]), jwks


def test_authlib_client_secret_basic_and_post(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    seen_jti = set()

    for method, scope, want_scope in [
        ("client_secret_basic", None, ALL_SCOPES),
        ("client_secret_post", "route:billing-api", f"route:{NS}/billing-api"),
        ("client_secret_basic", f"route:{NS}/reports", f"route:{NS}/reports"),
    ]:
        with OAuth2Session(cid, secret, token_endpoint_auth_method=method) as session:
            extra = {"scope": scope} if scope else {}
            # `verify` per request: requests prefers REQUESTS_CA_BUNDLE over `session.verify`.
            token = session.fetch_token(data["token_url"], grant_type="client_credentials",
                                        verify=str(dev.ca_path), **extra)
        assert token["token_type"].lower() == "bearer", token
        assert token["expires_in"] == TTL, token
        assert token.get("scope") == want_scope, token
        claims = verify_access_token(dev, token["access_token"], client_id=cid, scope=want_scope)
        assert claims["jti"] not in seen_jti, "two tokens share a jti"
        seen_jti.add(claims["jti"])

    # authlib surfaces the RFC 6749 error of a refused client.
    for method in ("client_secret_basic", "client_secret_post"):
        with OAuth2Session(cid, secret + "x", token_endpoint_auth_method=method) as session:
            with pytest.raises(OAuthError) as err:
                session.fetch_token(data["token_url"], grant_type="client_credentials", verify=str(dev.ca_path))
        assert err.value.error == "invalid_client", (method, err.value)


def run_node_client(dev: DevServer, request: dict, *, trust_ca: bool = True) -> tuple[int, dict]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        pytest.fail("node or e2e/node/node_modules/openid-client is missing: run scripts/install-test-deps "
                    "(or e2e/run.sh, which installs e2e/node)")
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    if trust_ca:
        env["NODE_EXTRA_CA_CERTS"] = str(dev.ca_path)
    cp = subprocess.run(["node", str(NODE_DIR / "client_credentials.mjs")], input=json.dumps(request),
                        capture_output=True, text=True, timeout=60, env=env, cwd=NODE_DIR)
    try:
        out = json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"node printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp.returncode, out


def test_openid_client_discovery_and_client_credentials(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]

    for auth, discovery, scope, want_scope in [
        ("post", "oidc", None, ALL_SCOPES),
        ("basic", "oauth2", "route:reports", f"route:{NS}/reports"),
    ]:
        req = {"issuer": dev.issuer, "client_id": cid, "client_secret": secret, "auth": auth,
               "discovery": discovery}
        if scope:
            req["scope"] = scope
        code, out = run_node_client(dev, req)
        assert code == 0 and "tokens" in out, f"openid-client ({auth}, {discovery}) failed: {out}"
        assert out["metadata"]["issuer"] == dev.issuer, out["metadata"]
        assert out["metadata"]["token_endpoint"] == data["token_url"], out["metadata"]
        tokens = out["tokens"]
        assert tokens["token_type"].lower() == "bearer", tokens
        assert tokens["expires_in"] == TTL, tokens
        assert tokens.get("scope") == want_scope, tokens
        verify_access_token(dev, tokens["access_token"], client_id=cid, scope=want_scope)

    # The https listener is really verified: without the dev CA the client refuses it.
    code, out = run_node_client(dev, {"issuer": dev.issuer, "client_id": cid, "client_secret": secret,
                                      "auth": "post", "discovery": "oidc"}, trust_ca=False)
    assert code != 0 and "tokens" not in out, out
    # A wrong secret is an OAuth error the client reports, not a token.
    # openid-client reports a 401 with WWW-Authenticate as the parsed challenge.
    wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")
    code, out = run_node_client(dev, {"issuer": dev.issuer, "client_id": cid, "client_secret": wrong,
                                      "auth": "basic", "discovery": "oidc"})
    err = out.get("error") or {}
    assert code != 0 and "tokens" not in out, out
    assert err.get("status") == 401, out
    assert [c.get("scheme") for c in err.get("challenges") or []] == ["basic"], out
    assert (err.get("body") or {}).get("error") == "invalid_client", out


def test_curl_basic_form_and_authentik_form(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]

    r = curl(dev, "-u", f"{cid}:{secret}", *CC)
    body = assert_token_response(r, "curl -u (client_secret_basic)")
    assert body.get("scope") == ALL_SCOPES, body
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)

    # RFC 6749 §2.3.1: both halves of Basic credentials are form-encoded; a client that encodes
    # every '-' and '_' (as %2D, %5F) names the same client and secret.
    def pct(text: str) -> str:
        return "".join(f"%{ord(ch):02X}" if ch in "-_" else ch for ch in text)

    r = curl(dev, "-H", "Authorization: " + basic(pct(cid), pct(secret)), *CC)
    body = assert_token_response(r, "Basic with form-encoded halves")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)

    r = curl(dev, *CC, "--data-urlencode", f"client_id={cid}", "--data-urlencode", f"client_secret={secret}",
             "--data-urlencode", "scope=route:billing-api")
    body = assert_token_response(r, "curl form (client_secret_post)")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=f"route:{NS}/billing-api")

    r = curl(dev, *CC, "--data-urlencode", f"client_id={cid}", "--data-urlencode", f"username={cid}",
             "--data-urlencode", f"password={secret}")
    body = assert_token_response(r, "curl authentik form (client_id + username + password)")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)

    # The authentik form with a username naming another client fails, whatever the password.
    _, other = apply_credential(dev, credential("other-bot"))
    r = curl(dev, *CC, "--data-urlencode", f"client_id={cid}", "--data-urlencode", f"username={other['client_id']}",
             "--data-urlencode", f"password={secret}")
    body = assert_oauth_error(r, 401, "invalid_client", "authentik form with a mismatched username")
    assert secret not in r.body.decode(errors="replace")


def test_token_endpoint_refuses_bad_requests(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    wrong = "pcs_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    big = dev.work_dir / "big-body"
    big.write_text("grant_type=client_credentials&padding=" + "a" * (17 * 1024))

    cases = [
        # (what, curl arguments, status, error)
        ("wrong secret, Basic", ["-u", f"{cid}:{wrong}", *CC], 401, "invalid_client"),
        ("wrong secret, form", [*CC, "--data-urlencode", f"client_id={cid}", "--data-urlencode",
                                f"client_secret={wrong}"], 401, "invalid_client"),
        ("unknown client", ["-u", f"no-such-client:{secret}", *CC], 401, "invalid_client"),
        ("empty secret, Basic", ["-u", f"{cid}:", *CC], 401, "invalid_client"),
        ("empty secret, form", [*CC, "--data-urlencode", f"client_id={cid}", "--data-urlencode", "client_secret="],
         401, "invalid_client"),
        ("no client authentication", [*CC], 401, "invalid_client"),
        ("Basic without a colon", ["-H", "Authorization: Basic " + base64.b64encode(cid.encode()).decode(), *CC],
         401, "invalid_client"),
        ("Basic with bad base64", ["-H", "Authorization: Basic %%%not-base64%%%", *CC], 401, "invalid_client"),
        ("Basic and client_secret in the body", ["-u", f"{cid}:{secret}", *CC, "--data-urlencode",
                                                  f"client_id={cid}", "--data-urlencode", f"client_secret={secret}"],
         400, "invalid_request"),
        ("repeated grant_type", ["-u", f"{cid}:{secret}", *CC, *CC], 400, "invalid_request"),
        ("missing grant_type", ["-u", f"{cid}:{secret}", "--data-urlencode", "scope=route:reports"],
         400, "invalid_request"),
        ("password grant", ["-u", f"{cid}:{secret}", "--data-urlencode", "grant_type=password"],
         400, "unsupported_grant_type"),
        ("scope outside the credential's", ["-u", f"{cid}:{secret}", *CC, "--data-urlencode",
                                             "scope=route:payroll"], 400, "invalid_scope"),
        ("scope of another namespace", ["-u", f"{cid}:{secret}", *CC, "--data-urlencode",
                                         "scope=route:other-ns/billing-api"], 400, "invalid_scope"),
        ("GET", ["-G", "-u", f"{cid}:{secret}", *CC], 405, "invalid_request"),
        ("JSON body", ["-u", f"{cid}:{secret}", "-H", "Content-Type: application/json",
                       "--data", '{"grant_type":"client_credentials"}'], 415, "invalid_request"),
        # HTTP/1.1 here: over HTTP/2 the server answers before the upload ends and then resets the
        # stream with NO_ERROR (RFC 9113 §8.1), which curl 7.88 reports as error 92 instead of the
        # response; test_token_endpoint_over_http2 checks that case with Node's client.
        ("body over 16 KiB", ["--http1.1", "-u", f"{cid}:{secret}", "--data-binary", f"@{big}"],
         413, "invalid_request"),
        ("chunked body over 16 KiB", ["--http1.1", "-u", f"{cid}:{secret}", "-H", "Transfer-Encoding: chunked",
                                      "--data-binary", f"@{big}"], 413, "invalid_request"),
    ]
    problems = []
    for what, args, status, code in cases:
        r = curl(dev, *args)
        try:
            assert_oauth_error(r, status, code, what)
            text = r.body.decode(errors="replace")
            assert secret not in text and wrong not in text, f"{what}: a secret is echoed in the body"
            if status == 405:
                assert r.headers.get("allow") == "POST", (what, r.headers)
        except AssertionError as exc:
            problems.append(f"- {what}: {exc}\n  headers: {r.headers}")
    assert not problems, "the token endpoint answered wrongly:\n" + "\n".join(problems)

    # The failures above did not lock the real client out.
    body = assert_token_response(curl(dev, "-u", f"{cid}:{secret}", *CC), "the real client after the failures")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)
    assert secret not in dev.stderr_text(), "the client secret appears in the server's log"


def http2_request(dev: DevServer, method: str, path: str, headers: dict, body_file: Path | None = None) -> dict:
    """One request with Node's built-in HTTP/2 client (e2e/node/http2_request.mjs)."""
    if shutil.which("node") is None:
        pytest.fail("node is missing: run scripts/install-test-deps")
    req = {"url": f"{dev.issuer}{path}", "ca": str(dev.ca_path), "method": method, "headers": headers}
    if body_file is not None:
        req["body_file"] = str(body_file)
    cp = subprocess.run(["node", str(NODE_DIR / "http2_request.mjs")], input=json.dumps(req),
                        capture_output=True, text=True, timeout=60)
    try:
        out = json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"node printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    assert cp.returncode == 0 and "error" not in out, f"HTTP/2 {method} {path} failed: {out}"
    return out


def test_token_endpoint_over_http2(identity_dev: DevServer):
    """The https listener speaks HTTP/2 (ALPN h2) to the token endpoint: a token, and a complete 413
    for an oversize upload, answered before the upload ends."""
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    form = {"content-type": "application/x-www-form-urlencoded", "authorization": basic(cid, secret)}

    small = dev.work_dir / "h2-body"
    small.write_text("grant_type=client_credentials")
    out = http2_request(dev, "POST", "/oauth2/token", form, small)
    r = HttpResult(out["status"], out["headers"], out["body"].encode())
    body = assert_token_response(r, "client_credentials over HTTP/2")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)

    big = dev.work_dir / "h2-big-body"
    big.write_text("grant_type=client_credentials&padding=" + "a" * (64 * 1024))
    out = http2_request(dev, "POST", "/oauth2/token", form, big)
    r = HttpResult(out["status"], out["headers"], out["body"].encode())
    assert_oauth_error(r, 413, "invalid_request", "a 64 KiB body over HTTP/2")
    assert out["rst_code"] == 0, f"the stream was reset with error code {out['rst_code']}, not NO_ERROR"


def get_token(dev: DevServer, cid: str, secret: str) -> HttpResult:
    return curl(dev, "-u", f"{cid}:{secret}", *CC)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def test_rotation_on_demand_keeps_the_previous_secret_during_the_overlap(identity_dev: DevServer):
    dev = identity_dev
    _, before = apply_credential(dev)
    cid, old = before["client_id"], before["client_secret"]
    verify_access_token(dev, assert_token_response(get_token(dev, cid, old), "before the rotation")["access_token"],
                        client_id=cid, scope=ALL_SCOPES)

    dev.kubectl("annotate", "sac", BOT, "-n", NS, "portcullis.dev/rotate=1", "--overwrite")
    rotated_at = time.time()
    _, after = wait_secret(dev, other_than=(old,))
    new = after["client_secret"]
    assert SECRET_RE.match(new)
    assert after["client_id"] == cid, "rotation must keep the client_id"
    assert after.get("client_secret_previous") == old, sorted(after)
    expires = parse_time(after["client_secret_previous_expires"])
    assert abs(expires - (rotated_at + OVERLAP)) < 120, (after["client_secret_previous_expires"], rotated_at)
    status = wait_for(lambda: (s := dev.get_json("sac", BOT, "-n", NS)["status"]).get("previousSecretExpires") and s,
                      30, what="status.previousSecretExpires")
    assert abs(parse_time(status["previousSecretExpires"]) - expires) < 2, status

    # Both the new secret and (during the overlap) the old one get tokens.
    for what, secret in (("the new secret", new), ("the previous secret during the overlap", old)):
        body = assert_token_response(get_token(dev, cid, secret), what)
        verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)
    wait_for(lambda: describe_sac(dev, BOT, "SecretRotated", "portcullis.dev/rotate"), 30,
             what="the SecretRotated Event")

    # With `overlap: 0s` the previous secret is retired at once and not carried in the Secret.
    _, quick = apply_credential(dev, credential("quick", rotation={"every": "720h", "overlap": "0s"}))
    dev.kubectl("annotate", "sac", "quick", "-n", NS, "portcullis.dev/rotate=now", "--overwrite")
    _, quick_after = wait_secret(dev, "quick-oauth", other_than=(quick["client_secret"],))
    assert set(quick_after) == {"client_id", "client_secret", "token_url", "issuer"}, sorted(quick_after)
    assert_oauth_error(get_token(dev, quick["client_id"], quick["client_secret"]), 401, "invalid_client",
                       "the previous secret of a credential with overlap 0s")
    body = assert_token_response(get_token(dev, quick["client_id"], quick_after["client_secret"]),
                                 "the new secret of a credential with overlap 0s")
    verify_access_token(dev, body["access_token"], client_id=quick["client_id"], name="quick", scope=ALL_SCOPES)



def test_edited_or_deleted_secret_is_replaced_and_never_trusted(identity_dev: DevServer):
    dev = identity_dev
    _, before = apply_credential(dev)
    cid, original = before["client_id"], before["client_secret"]
    forged = "pcs_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()

    patch = {"data": {"client_secret": base64.b64encode(forged.encode()).decode()}}
    dev.kubectl("patch", "secret", f"{BOT}-oauth", "-n", NS, "--type", "merge", "-p", json.dumps(patch))
    assert_oauth_error(get_token(dev, cid, forged), 401, "invalid_client", "the edited value, at once")
    _, after = wait_secret(dev, other_than=(original, forged))
    fresh = after["client_secret"]
    assert SECRET_RE.match(fresh)
    assert after["client_id"] == cid
    assert after.get("client_secret_previous") != forged, "the edited value was carried as the previous secret"
    assert_oauth_error(get_token(dev, cid, forged), 401, "invalid_client", "the edited value, after the rotation")
    body = assert_token_response(get_token(dev, cid, fresh), "the replacement secret")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)
    wait_for(lambda: describe_sac(dev, BOT, "SecretModified", "Warning"), 30, what="the SecretModified Event")

    # A deleted Secret comes back with a fresh secret.
    dev.kubectl("delete", "secret", f"{BOT}-oauth", "-n", NS)
    _, again = wait_secret(dev, other_than=(original, forged, fresh))
    assert again["client_id"] == cid
    body = assert_token_response(get_token(dev, cid, again["client_secret"]), "the secret after a delete")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)
    wait_for(lambda: describe_sac(dev, BOT, "SecretDeleted"), 30, what="the SecretDeleted Event")


def test_plain_http_never_carries_client_secrets(identity_dev: DevServer):
    """With an https issuer, the http listener redirects reads of the identity endpoints to https
    and refuses a token request without processing it, even with a valid secret."""
    dev = identity_dev
    assert dev.http_url, "portcullis dev printed no `http` listener line"
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    http_port = urlsplit(dev.http_url).port
    plain = f"http://localhost:{http_port}"

    def over_http(path: str, *args: str) -> HttpResult:
        return curl(dev, "--resolve", f"localhost:{http_port}:127.0.0.1", *args, url=f"{plain}{path}")

    r = over_http("/oauth2/token", "-u", f"{cid}:{secret}", *CC)
    assert_oauth_error(r, 400, "invalid_request", "a token request over plain http")
    assert b"access_token" not in r.body
    r = over_http("/.well-known/openid-configuration")
    assert r.status == 308, r
    assert r.headers.get("location") == f"{dev.issuer}/.well-known/openid-configuration", r.headers


def test_spec_changes_reach_new_tokens_and_deletion_revokes(identity_dev: DevServer):
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    verify_access_token(dev, assert_token_response(get_token(dev, cid, secret), "before the change")["access_token"],
                        client_id=cid, scope=ALL_SCOPES)

    dev.kubectl("patch", "sac", BOT, "-n", NS, "--type", "merge", "-p", json.dumps(
        {"spec": {"accessTokenTTL": "30m", "scopes": ["route:reports"], "claims": {"team": "risk"}}}))
    new_claims = {"team": "risk", "tier": "gold"}  # a merge patch keeps the other claims

    def changed():
        r = get_token(dev, cid, secret)
        assert r.status == 200, r
        return r if r.json()["expires_in"] == 1800 else None

    r = wait_for(changed, 30, what="tokens with the new accessTokenTTL")
    body = r.json()
    assert body.get("scope") == f"route:{NS}/reports", body
    verify_access_token(dev, body["access_token"], client_id=cid, scope=f"route:{NS}/reports",
                        claims=new_claims, ttl=1800)
    assert_oauth_error(curl(dev, "-u", f"{cid}:{secret}", *CC, "--data-urlencode", "scope=route:billing-api"),
                       400, "invalid_scope", "a scope the credential no longer has")
    assert read_secret(dev, f"{BOT}-oauth")[1]["client_secret"] == secret, "a spec change rotated the secret"

    # Deleting the credential revokes its client and garbage-collects its Secret.
    dev.kubectl("delete", "sac", BOT, "-n", NS)
    wait_for(lambda: get_token(dev, cid, secret).status == 401, 10, what="the deleted credential's client refused")
    assert_oauth_error(get_token(dev, cid, secret), 401, "invalid_client", "the deleted credential's client")
    wait_for(lambda: read_secret(dev, f"{BOT}-oauth") is None, 30, what="the Secret garbage-collected")


def test_guessing_is_throttled_per_source_without_locking_out_the_client(identity_dev: DevServer):
    """Failed authentications are limited per source address and client (SECURITY.md "Token
    endpoint": guessing): a guesser on 127.0.0.2 is slowed down with 429 + Retry-After, even when it
    finally sends the right secret, while the real client on 127.0.0.1 is never locked out."""
    dev = identity_dev
    _, data = apply_credential(dev)
    cid, secret = data["client_id"], data["client_secret"]
    guesser = ["--interface", "127.0.0.2"]  # another loopback source address

    statuses = []
    for _ in range(12):
        wrong = "pcs_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        statuses.append(curl(dev, *guesser, "-u", f"{cid}:{wrong}", *CC).status)
    assert statuses[:3] == [401] * 3 and statuses[-1] == 429, statuses
    r = curl(dev, *guesser, "-u", f"{cid}:{secret}", *CC)
    body = assert_oauth_error(r, 429, "temporarily_unavailable", "the right secret from the throttled source")
    assert "access_token" not in body
    assert int(r.headers.get("retry-after", "0")) > 0, r.headers

    body = assert_token_response(get_token(dev, cid, secret), "the real client from another address")
    verify_access_token(dev, body["access_token"], client_id=cid, scope=ALL_SCOPES)
