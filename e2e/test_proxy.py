"""The machine-to-machine flow through the proxy, end to end: a Route and a
ServiceAccountCredential applied with real kubectl, a token from the issuer with a standard OAuth
2.0 client, and the route called through the http and https listeners of `portcullis dev` to its
built-in echo upstream (DESIGN §3, §4; SECURITY.md "Proxying").

Clients: Python `requests` + `authlib` (client_credentials, client_secret_basic), Node
`openid-client` 6 (`e2e/node/protected_resource.mjs`: discovery, client credentials,
`fetchProtectedResource` over https), `curl` (Basic, `X-Portcullis-Authorization`, TLS, HTTP/2),
Python's `http.client` and raw sockets for what clients refuse to send (ambiguous paths and
framing, spoofed headers, slowloris). The upstream identity assertion is verified with `joserfc`
against the served JWKS. The echo answers JSON {method, path, query, headers, body, identity}.

Every test uses `identity_dev` (conftest): the issuer is `https://localhost:<https port>`; each
test has its own namespace and `*.localhost` hosts, reached with an explicit Host header (or
`curl --resolve`), since those names do not resolve here.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import DevServer, HttpResult, namespace, wait_for

NODE_DIR = Path(__file__).resolve().parent / "node"
# What a spoofing client sends: every identity header spelling the proxy must drop (SECURITY.md
# "Proxying"), in dash and underscore forms.
SPOOFED = [
    ("X-Portcullis-Jwt-Assertion", "forged.forged.forged"),
    ("X-Portcullis-User", "root"),
    ("X-Portcullis-Email", "root@example.com"),
    ("X-Pomerium-Jwt-Assertion", "forged.forged.forged"),
    ("X-Pomerium-Claim-Email", "root@example.com"),
    ("X-Forwarded-User", "root"),
    ("X-Forwarded-Email", "root@example.com"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "root"),
    ("Remote-User", "root"),
    ("X_Portcullis_Jwt_Assertion", "forged.forged.forged"),
    ("X_Pomerium_Claim_Email", "root@example.com"),
    ("X_Forwarded_User", "root"),
    ("X_Forwarded_Email", "root@example.com"),
    ("Remote_User", "root"),
]


# --------------------------------------------------------------------------------------------
# objects, applied with kubectl
# --------------------------------------------------------------------------------------------


def route(ns: str, name: str, frm: str, to: str | list, **spec) -> dict:
    targets = [{"url": to}] if isinstance(to, str) else to
    return {"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": name, "namespace": ns}, "spec": {"from": frm, "to": targets, **spec}}


def allow(*accounts: str, **extra) -> dict:
    """A policy allowing the named ServiceAccountCredentials (`ns/name`)."""
    policy: dict = {"allow": {"or": [{"serviceAccount": {"is": a}} for a in accounts]}}
    policy.update(extra)
    return policy


def credential(ns: str, name: str, **spec) -> dict:
    return {"apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def secret_data(dev: DevServer, ns: str, name: str) -> dict[str, str]:
    """The generated Secret of credential `name`, read back with kubectl and decoded."""
    def read():
        cp = dev.kubectl("get", "secret", f"{name}-oauth", "-n", ns, "-o", "json", check=False)
        if cp.returncode != 0:
            return None
        data = json.loads(cp.stdout).get("data") or {}
        decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
        return decoded if decoded.get("client_secret") else None

    return wait_for(read, 30, what=f"Secret {ns}/{name}-oauth")


def route_condition(dev: DevServer, ns: str, name: str, type_: str, status: str) -> dict:
    def check():
        obj = dev.get_json("route", name, "-n", ns)
        found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_]
        assert found, "no condition yet"
        assert found[0]["status"] == status, f"{type_} is {found[0]['status']} ({found[0]['reason']})"
        return found[0]

    return wait_for(check, 30, what=f"route {ns}/{name} {type_}={status}")


def route_url(dev: DevServer, ns: str, name: str) -> str:
    return wait_for(lambda: (dev.get_json("route", name, "-n", ns).get("status") or {}).get("url"),
                    30, what=f"status.url of route {ns}/{name}")


# --------------------------------------------------------------------------------------------
# tokens and the identity assertion
# --------------------------------------------------------------------------------------------


def fetch_token(dev: DevServer, data: dict[str, str], scope: str | None = None) -> str:
    """A client_credentials token with authlib, client_secret_basic, from the Secret's token_url."""
    with OAuth2Session(data["client_id"], data["client_secret"],
                       token_endpoint_auth_method="client_secret_basic") as session:
        extra = {"scope": scope} if scope else {}
        # `verify` per request: requests prefers REQUESTS_CA_BUNDLE over `session.verify`.
        token = session.fetch_token(data["token_url"], grant_type="client_credentials",
                                    verify=str(dev.ca_path), **extra)
    assert token["token_type"].lower() == "bearer", token
    return token["access_token"]


def jwks(dev: DevServer) -> KeySet:
    r = requests.get(f"{dev.issuer}/.well-known/jwks.json", verify=str(dev.ca_path), timeout=10)
    assert r.status_code == 200, r.text
    return KeySet.import_key_set(r.json())


def verify_assertion(dev: DevServer, assertion: str, *, aud: str, sub: str) -> dict:
    """Verify `X-Portcullis-Jwt-Assertion` with joserfc against the served JWKS, as an upstream
    must: signature, `typ`, `iss`, `aud` = the route URL, `sub`, a lifetime of at most 5 minutes."""
    decoded = jwt.decode(assertion, jwks(dev), algorithms=["ES256"])
    assert decoded.header.get("typ") == "JWT", decoded.header
    c = decoded.claims
    jwt.JWTClaimsRegistry(
        leeway=5,
        iss={"essential": True, "value": dev.issuer},
        aud={"essential": True, "value": aud},
        sub={"essential": True, "value": sub},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(c)
    assert c["aud"] == aud, c
    assert 0 < c["exp"] - c["iat"] <= 300, c
    return c


# --------------------------------------------------------------------------------------------
# HTTP to routes
# --------------------------------------------------------------------------------------------


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port, url
    return port


def call(dev: DevServer, host: str, path: str = "/", *, token: str | None = None,
         headers: dict | None = None, method: str = "GET", session: requests.Session | None = None,
         timeout: float = 20) -> requests.Response:
    """One request to the http listener for `host` (the Host header names it)."""
    h = {"Host": host}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    return (session or requests).request(method, f"{dev.http_url}{path}", headers=h, timeout=timeout,
                                         allow_redirects=False)


def echoed(r: requests.Response | HttpResult, what: str = "") -> dict:
    status = r.status_code if isinstance(r, requests.Response) else r.status
    body = r.text if isinstance(r, requests.Response) else r.body.decode(errors="replace")
    assert status == 200, f"{what}: HTTP {status} {body[:500]}"
    echo = json.loads(body)
    assert {"method", "path", "headers", "identity"} <= set(echo), f"{what}: not the echo: {body[:300]}"
    return echo


def assert_refusal(r: requests.Response | HttpResult, status: int, code: str, what: str) -> dict:
    """The proxy's own refusals: status, a JSON body {error, error_description}, no-store."""
    got = r.status_code if isinstance(r, requests.Response) else r.status
    headers = {k.lower(): v for k, v in r.headers.items()}
    body_text = r.text if isinstance(r, requests.Response) else r.body.decode(errors="replace")
    assert got == status, f"{what}: expected HTTP {status}, got {got} {body_text[:300]}"
    assert headers.get("content-type", "").startswith("application/json"), (what, headers)
    assert "no-store" in headers.get("cache-control", ""), (what, headers)
    body = json.loads(body_text)
    assert body.get("error") == code, f"{what}: expected error {code}, got {body}"
    assert isinstance(body.get("error_description"), str) and body["error_description"], (what, body)
    return body


def h1(dev: DevServer, method: str, path: str, headers: list[tuple[str, str]], *,
       https: bool = False) -> HttpResult:
    """One HTTP/1.1 request with `http.client`, headers sent exactly as given (repeats, underscores,
    no Host unless listed); the path is sent as written."""
    url = urlsplit(dev.https_url if https else dev.http_url)
    if https:
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=20,
                                           context=ssl.create_default_context(cafile=str(dev.ca_path)))
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        out: dict[str, str] = {}
        for k, v in resp.getheaders():
            out[k.lower()] = f"{out[k.lower()]}, {v}" if k.lower() in out else v
        return HttpResult(resp.status, out, body)
    finally:
        conn.close()


@dataclass
class Raw:
    """What came back on a raw connection: the status line's code (None: nothing), the head and
    body as bytes, and whether the server closed the connection."""
    status: int | None
    head: bytes
    body: bytes
    closed: bool

    def json(self):
        return json.loads(self.body)


def raw(dev: DevServer, data: bytes, *, wait_close: float = 5.0) -> Raw:
    """Send `data` on a fresh TCP connection to the http listener and read one response; then wait
    up to `wait_close` seconds for the server to close the connection."""
    url = urlsplit(dev.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as s:
        s.sendall(data)
        buf = b""
        closed = False
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
        if not buf:
            return Raw(None, b"", b"", True)
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                       if line.lower().startswith(b"content-length:")), 0)
        while not closed and len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            body += chunk
        if not closed and wait_close > 0:
            s.settimeout(wait_close)
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
            except ConnectionResetError:
                closed = True
        return Raw(status, head, body, closed)


def curl(*args: str) -> tuple[int, dict, bytes, str]:
    """curl; returns (status, final headers, body, http_version)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"e2e-proxy-curl-{secrets.token_hex(6)}"
    cmd = ["curl", "-sS", "--max-time", "20", "-D", f"{out}.h", "-o", f"{out}.b",
           "-w", "%{http_code} %{http_version}", *args]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    try:
        assert cp.returncode == 0, f"curl exited {cp.returncode}: {cp.stderr}\n{' '.join(cmd)}"
        code, version = cp.stdout.split()
        blocks = [b for b in Path(f"{out}.h").read_text(errors="replace").replace("\r\n", "\n").split("\n\n")
                  if b.startswith("HTTP/")]
        headers: dict[str, str] = {}
        for line in blocks[-1].splitlines()[1:] if blocks else []:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(code), headers, Path(f"{out}.b").read_bytes(), version
    finally:
        for suffix in (".h", ".b"):
            Path(f"{out}{suffix}").unlink(missing_ok=True)


class Hammer:
    """A thread that calls `probe()` back to back until stopped and keeps every answer: for "not
    a single failed request while ..." checks. `probe` returns (status, detail)."""

    def __init__(self, probe):
        self.probe = probe
        self.results: list[tuple[int, object]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.results.append(self.probe())
            except Exception as exc:  # noqa: BLE001 - a transport error is a failed request
                self.errors.append(repr(exc))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def more(self, n: int = 5):
        """Wait until `n` more answers arrived (so the checks cover what just happened)."""
        start = len(self.results) + len(self.errors)
        wait_for(lambda: len(self.results) + len(self.errors) >= start + n, 30,
                 what=f"{n} more requests from the background client")

    def seen(self, predicate) -> bool:
        return any(predicate(detail) for status, detail in list(self.results) if status == 200)

    def failures(self) -> list:
        return [r for r in self.results if r[0] != 200] + self.errors


@dataclass
class Setup:
    dev: DevServer
    ns: str
    data: dict[str, str] = field(default_factory=dict)
    token: str = ""


def setup(dev: DevServer, ns: str, *docs: dict, bot: dict | None = None, scope: str | None = None,
          serve: tuple[str, str] | None = None) -> Setup:
    """Namespace, the credential `bot` (spec `bot`) and `docs` with kubectl; its Secret read back
    with kubectl; a token with authlib. `serve`: (host, path) to wait for until it answers 200."""
    dev.apply_docs(namespace(ns), credential(ns, "bot", **(bot or {})), *docs)
    s = Setup(dev, ns, secret_data(dev, ns, "bot"))
    s.token = fetch_token(dev, s.data, scope)
    if serve:
        host, path = serve
        wait_for(lambda: call(dev, host, path, token=s.token).status_code == 200, 30,
                 what=f"{host}{path} served")
    return s


def assert_still_serving(dev: DevServer, host: str, token: str, what: str):
    r = call(dev, host, "/still", token=token)
    assert echoed(r, f"the good route after {what}")["path"] == "/still"


def make_certificate(work: Path, *hosts: str) -> tuple[Path, Path, Path]:
    """A private CA and a leaf for `hosts` with openssl: (ca.crt, tls.crt, tls.key)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing (Debian package openssl)")
    work.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = work / "ca.key", work / "ca.crt"
    key, csr, crt, ext = work / "tls.key", work / "tls.csr", work / "tls.crt", work / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts)
                   + "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")

    def run(*args):
        cp = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, f"openssl {' '.join(args)}: {cp.stderr}"

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
        "-subj", "/CN=e2e-proxy test CA")
    run("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hosts[0]}")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return ca_crt, crt, key


# --------------------------------------------------------------------------------------------
# 1-3: the flow with real clients
# --------------------------------------------------------------------------------------------


def test_authlib_token_reaches_the_route_with_a_verifiable_assertion(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-flow", "flow.localhost"
    s = setup(dev, ns, route(ns, "flow", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              bot={"scopes": ["route:flow"]}, serve=(host, "/"))
    # The Secret carries what a workload needs to find the issuer.
    assert s.data["token_url"] == f"{dev.issuer}/oauth2/token", s.data
    url = route_url(dev, ns, "flow")
    assert url == f"http://{host}", url

    with requests.Session() as session:
        r = call(dev, f"{host}:{port_of(dev.http_url)}", "/hello/world", token=s.token, session=session,
                 headers={"Accept": "application/json"}, method="POST")
    echo = echoed(r, "POST through the route")
    assert (echo["method"], echo["path"]) == ("POST", "/hello/world"), echo
    headers = echo["headers"]
    assert "authorization" not in headers, "the access token reached the upstream"
    assert s.token not in json.dumps(echo), "the access token reached the upstream"
    claims = verify_assertion(dev, headers["x-portcullis-jwt-assertion"], aud=url,
                              sub=f"serviceaccount:{ns}/bot")
    assert claims["client_id"] == s.data["client_id"], claims
    assert headers["x-forwarded-for"] == "127.0.0.1", headers
    assert headers["x-forwarded-proto"] == "http", headers

    # The assertion is for upstreams only: as a bearer token on the route it is refused.
    r = call(dev, host, "/", token=headers["x-portcullis-jwt-assertion"])
    assert_refusal(r, 401, "invalid_token", "the upstream assertion used as an access token")


def run_node(script: str, request: dict, ca: Path) -> tuple[int, dict]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        pytest.fail("node or e2e/node/node_modules/openid-client is missing: run scripts/install-test-deps "
                    "(or e2e/run.sh, which installs e2e/node)")
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(ca))
    cp = subprocess.run(["node", str(NODE_DIR / script)], input=json.dumps(request), capture_output=True,
                        text=True, timeout=60, env=env, cwd=NODE_DIR)
    try:
        return cp.returncode, json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"node printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")


def test_openid_client_fetch_protected_resource_over_https(identity_dev: DevServer):
    """Node's openid-client discovers the issuer (dev CA) and calls routes that have their own
    certificate (see test_dev_certificate_verifies_for_localhost_route_hosts for why not the dev
    CA's): NODE_EXTRA_CA_CERTS holds both CAs."""
    dev, ns = identity_dev, "e2e-proxy-node"
    host, other = "node.localhost", "node-other.localhost"
    https_port = port_of(dev.https_url)
    own_ca, crt, key = make_certificate(dev.work_dir / "node-cert", host, other)
    bundle = dev.work_dir / "node-cas.pem"
    bundle.write_text(dev.ca_path.read_text() + own_ca.read_text())
    s = setup(dev, ns)
    dev.kubectl("create", "secret", "tls", "node-tls", "-n", ns, f"--cert={crt}", f"--key={key}")
    dev.apply_docs(
        route(ns, "node", f"https://{host}", dev.echo_url, policy=allow(f"{ns}/bot"), tls={"secretName": "node-tls"}),
        route(ns, "node-other", f"https://{other}", dev.echo_url, policy=allow(f"{ns}/bot"),
              tls={"secretName": "node-tls"}),
    )
    url = route_url(dev, ns, "node")
    request = {"issuer": dev.issuer, "client_id": s.data["client_id"], "client_secret": s.data["client_secret"],
               "resolve": {host: "127.0.0.1", other: "127.0.0.1"}}

    def fetched():
        code, out = run_node("protected_resource.mjs", {**request, "url": f"https://{host}:{https_port}/api/items"},
                             bundle)
        assert code == 0 and out.get("status") == 200, out
        return out

    out = wait_for(fetched, 30, what="openid-client fetchProtectedResource -> 200")
    echo = json.loads(out["body"])
    assert echo["path"] == "/api/items", echo
    headers = echo["headers"]
    assert "authorization" not in headers, "the access token reached the upstream"
    assert out["access_token"] not in out["body"], "the access token reached the upstream"
    assert headers["x-forwarded-proto"] == "https", headers
    verify_assertion(dev, headers["x-portcullis-jwt-assertion"], aud=url, sub=f"serviceaccount:{ns}/bot")

    # A token narrowed to `node` is refused on `node-other` although its policy allows the bot:
    # openid-client reports the RFC 6750 challenge.
    route_condition(dev, ns, "node-other", "Ready", "True")
    code, out = run_node("protected_resource.mjs", {**request, "scope": "route:node",
                                                    "url": f"https://{other}:{https_port}/"}, bundle)
    err = out.get("error") or {}
    assert code != 0 and err.get("status") == 403, out
    challenge = (err.get("challenges") or [{}])[0]
    assert challenge.get("scheme") == "bearer", out
    assert challenge.get("parameters", {}).get("error") == "insufficient_scope", out
    assert challenge["parameters"].get("scope") == f"route:{ns}/node-other", out


def test_curl_basic_and_portcullis_header_leave_the_upstream_authorization(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-curl", "curl.localhost"
    s = setup(dev, ns, route(ns, "curl", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              serve=(host, "/"))
    port = port_of(dev.http_url)
    base = ["--resolve", f"{host}:{port}:127.0.0.1", f"http://{host}:{port}/x"]
    upstream_basic = "Basic " + base64.b64encode(b"upstream-user:upstream-pass").decode()

    # The token as the password of Basic credentials (clients that only speak Basic).
    status, _, body, _ = curl("-u", f"x:{s.token}", *base)
    echo = echoed(HttpResult(status, {}, body), "curl -u x:$TOKEN")
    assert "authorization" not in echo["headers"], "Basic credentials carrying our token were forwarded"
    assert echo["identity"]["sub"] == f"serviceaccount:{ns}/bot", echo

    # X-Portcullis-Authorization carries our token; the upstream's own Basic passes untouched.
    for value in (s.token, f"Bearer {s.token}"):
        status, _, body, _ = curl("-H", f"X-Portcullis-Authorization: {value}", "-u", "upstream-user:upstream-pass",
                                  *base)
        echo = echoed(HttpResult(status, {}, body), f"X-Portcullis-Authorization: {value[:10]}...")
        headers = echo["headers"]
        assert headers.get("authorization") == upstream_basic, headers
        assert "x-portcullis-authorization" not in headers, headers
        assert s.token not in json.dumps(echo), "our token reached the upstream"
        verify_assertion(dev, headers["x-portcullis-jwt-assertion"], aud=f"http://{host}",
                         sub=f"serviceaccount:{ns}/bot")

    # Basic with a password that is not our token is a bad credential, not a pass-through.
    status, headers, body, _ = curl("-u", "upstream-user:upstream-pass", *base)
    assert_refusal(HttpResult(status, headers, body), 401, "invalid_token", "Basic without our token")


# --------------------------------------------------------------------------------------------
# 4-6: changes while serving
# --------------------------------------------------------------------------------------------


def test_route_edits_are_served_without_restart_or_a_failed_request(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-edit", "edit.localhost"
    s = setup(dev, ns, route(ns, "edit", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot"),
                             setRequestHeaders={"X-Edit": "0"}), serve=(host, "/v2/items"))
    pid = dev.proc.pid
    session = requests.Session()

    def probe():
        r = call(dev, host, "/v2/items", token=s.token, session=session)
        if r.status_code != 200:
            return r.status_code, r.text[:200]
        echo = r.json()
        return 200, (echo["headers"].get("x-edit"), echo["path"])

    def patch(spec: dict):
        dev.kubectl("patch", "route", "edit", "-n", ns, "--type", "merge", "-p", json.dumps({"spec": spec}))

    with Hammer(probe) as hammer:
        hammer.more()
        for value in ("1", "2", "3"):
            patch({"setRequestHeaders": {"X-Edit": value}})
            wait_for(lambda: hammer.seen(lambda d: d[0] == value), 30, what=f"X-Edit: {value} at the echo")
        # A new path: the route now serves /v2 only and rewrites it away.
        patch({"from": f"http://{host}/v2", "prefixRewrite": "/"})
        wait_for(lambda: hammer.seen(lambda d: d == ("3", "/items")), 30, what="the rewritten path at the echo")
        hammer.more()
    session.close()

    assert not hammer.failures(), f"failed requests during the edits: {hammer.failures()[:5]}"
    assert len(hammer.results) >= 20, f"only {len(hammer.results)} requests were made"
    values = [d[0] for _, d in hammer.results]
    assert values == sorted(values), "an older version of the route answered after a newer one"
    assert dev.running() and dev.proc.pid == pid, "the server restarted"
    assert call(dev, host, "/items", token=s.token).status_code == 404, "the old path is still served"


def test_deleting_the_credential_stops_its_tokens(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-revoke", "revoke.localhost"
    s = setup(dev, ns, route(ns, "revoke", f"http://{host}", dev.echo_url,
                             policy=allow(f"{ns}/bot", f"{ns}/keeper")), serve=(host, "/"))
    dev.apply_docs(credential(ns, "keeper"))
    keeper = fetch_token(dev, secret_data(dev, ns, "keeper"))
    for _ in range(3):  # a verified, cached token
        echoed(call(dev, host, "/", token=s.token), "before the delete")

    dev.kubectl("delete", "sac", "bot", "-n", ns)
    # (a tuple: a requests.Response with a 4xx status is falsy)
    (r,) = wait_for(lambda: (r := call(dev, host, "/", token=s.token)).status_code == 401 and (r,), 10,
                    what="the deleted credential's token refused")
    assert_refusal(r, 401, "invalid_token", "a token of a deleted credential")
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.startswith(f'Bearer realm="{host}"') and 'error="invalid_token"' in challenge, challenge
    # Only that credential: another one on the same route keeps working.
    echoed(call(dev, host, "/", token=keeper), "another credential's token after the delete")


def test_a_bad_route_never_disturbs_the_good_one(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-bad", "good.localhost"
    s = setup(dev, ns, route(ns, "good", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot"),
                             setRequestHeaders={"X-Route": "good"}), serve=(host, "/"))
    session = requests.Session()

    def probe():
        r = call(dev, host, "/", token=s.token, session=session)
        return r.status_code, r.json()["headers"].get("x-route") if r.status_code == 200 else r.text[:200]

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    other = "e2e-proxy-bad-other"
    with Hammer(probe) as hammer:
        hammer.more()
        # A Service of the same name, with an endpoint, exists in another namespace only.
        echo_port = port_of(dev.echo_url)
        dev.apply_docs(namespace(other), {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": other},
            "spec": {"ports": [{"port": 80, "targetPort": echo_port, "protocol": "TCP"}]},
        }, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "echo-1", "namespace": other, "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"port": echo_port, "protocol": "TCP"}],
        })
        dev.apply_docs(
            route(ns, "badpolicy", "http://badpolicy.localhost", dev.echo_url,
                  policy={"allow": {"or": [{"no_such_criterion": {"is": "x"}}]}}),
            route(ns, "linklocal", "http://linklocal.localhost", "http://169.254.169.254/latest/meta-data",
                  allowPublicUnauthenticatedAccess=True),
            # Same host and path as `good`, younger (and later by name): it loses.
            route(ns, "zz-duplicate", f"http://{host}", f"http://127.0.0.1:{closed_port}",
                  allowPublicUnauthenticatedAccess=True, setRequestHeaders={"X-Route": "duplicate"}),
        )
        # The schema has no namespace for a Service; a client that skips validation loses the field,
        # and the name is looked up in the route's own namespace.
        dev.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(
            route(ns, "crossns", "http://crossns.localhost",
                  [{"service": {"name": "echo", "namespace": other, "port": 80}}],
                  allowPublicUnauthenticatedAccess=True)))

        c = route_condition(dev, ns, "badpolicy", "Accepted", "False")
        assert c["reason"] == "InvalidPolicy" and "no_such_criterion" in c["message"], c
        c = route_condition(dev, ns, "linklocal", "ResolvedRefs", "False")
        assert c["reason"] == "BackendNotAllowed", c
        c = route_condition(dev, ns, "zz-duplicate", "Accepted", "False")
        assert c["reason"] == "Conflict" and f"Route {ns}/good" in c["message"], c
        c = route_condition(dev, ns, "crossns", "ResolvedRefs", "False")
        assert c["reason"] == "BackendNotFound" and f"{ns}/echo" in c["message"], c
        route_condition(dev, ns, "good", "Ready", "True")

        # Nothing crossed: the refused backends are never reached.
        for bad_host in ("linklocal.localhost", "crossns.localhost"):
            assert_refusal(call(dev, bad_host, "/"), 503, "no_upstream", bad_host)
        assert_refusal(call(dev, "badpolicy.localhost", "/", token=s.token), 404, "route_not_found",
                       "a route with an invalid policy")
        hammer.more(10)
    session.close()

    assert not hammer.failures(), f"the good route failed while bad ones were applied: {hammer.failures()[:5]}"
    routes_seen = {d for _, d in hammer.results}
    assert routes_seen == {"good"}, f"answers came from {routes_seen}"


# --------------------------------------------------------------------------------------------
# 7: answers
# --------------------------------------------------------------------------------------------


class SilentUpstream:
    """A loopback TCP server that reads requests and never answers (until stopped)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_refusals_are_rfc_shaped(identity_dev: DevServer):
    dev, ns = identity_dev, "e2e-proxy-answers"
    host = "answers.localhost"
    silent = SilentUpstream()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        s = setup(dev, ns,
                  route(ns, "answers", f"http://{host}", dev.echo_url,
                        policy=allow(f"{ns}/bot", deny={"or": [{"http_path": {"starts_with": "/admin"}}]})),
                  route(ns, "unscoped", "http://unscoped.localhost", dev.echo_url, policy=allow(f"{ns}/bot")),
                  route(ns, "down", "http://down.localhost", f"http://127.0.0.1:{closed_port}",
                        policy=allow(f"{ns}/bot")),
                  route(ns, "slow", "http://slow.localhost", f"http://127.0.0.1:{silent.port}",
                        policy=allow(f"{ns}/bot"), timeout="1s"),
                  bot={"scopes": ["route:answers", "route:down", "route:slow"]}, serve=(host, "/"))
        for name in ("unscoped", "down", "slow"):
            route_condition(dev, ns, name, "Accepted", "True")

        # No token: 401 with an RFC 6750 challenge and a JSON body, never a redirect.
        r = call(dev, host, "/")
        assert_refusal(r, 401, "invalid_token", "no token")
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.startswith(f'Bearer realm="{host}", error="invalid_token"'), challenge
        assert "error_description=" in challenge, challenge
        r = call(dev, host, "/", token=s.token[:-6] + "AAAAAA")
        assert_refusal(r, 401, "invalid_token", "a token with a bad signature")
        assert s.token[:20] not in r.text

        # Scopes narrow: the policy of `unscoped` allows the bot, its token does not name it.
        (r,) = wait_for(lambda: (r := call(dev, "unscoped.localhost", "/", token=s.token)).status_code == 403
                        and (r,), 30, what="unscoped served")
        assert_refusal(r, 403, "insufficient_scope", "a token scoped to other routes")
        challenge = r.headers.get("www-authenticate", "")
        assert 'error="insufficient_scope"' in challenge and f'scope="route:{ns}/unscoped"' in challenge, challenge

        # Policy deny wins over allow.
        assert_refusal(call(dev, host, "/admin/users", token=s.token), 403, "access_denied", "policy deny")
        assert_refusal(call(dev, "nothing-here.localhost", "/", token=s.token), 404, "route_not_found",
                       "an unknown host")

        r = call(dev, "down.localhost", "/", token=s.token)
        body = assert_refusal(r, 502, "bad_gateway", "an upstream on a closed port")
        assert str(closed_port) not in json.dumps(body), "internal details reach the client"
        assert_refusal(call(dev, "slow.localhost", "/", token=s.token), 504, "gateway_timeout",
                       "an upstream slower than the route's 1s timeout")
        echoed(call(dev, host, "/", token=s.token), "the good route after the failures")
    finally:
        silent.close()


def test_admin_endpoints_are_not_served_on_the_route_listeners(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-admin", "admin-ep.localhost"
    s = setup(dev, ns, route(ns, "web", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              serve=(host, "/"))
    for path in ("/metrics", "/healthz", "/readyz"):
        for target in ("127.0.0.1", "nothing.localhost"):
            r = h1(dev, "GET", path, [("Host", target)])
            assert_refusal(r, 404, "route_not_found", f"{path} on the http listener for {target}")
        r = h1(dev, "GET", path, [("Host", urlsplit(dev.issuer).netloc)], https=True)
        assert r.status == 404, f"{path} on the authenticate host: {r}"
        assert r.json().get("error"), r
        # On a route host the path belongs to the upstream, behind authentication.
        assert call(dev, host, path).status_code == 401
        assert echoed(call(dev, host, path, token=s.token))["path"] == path
    assert dev.admin_get("/healthz")[0] == 200, "the admin listener serves /healthz"


# --------------------------------------------------------------------------------------------
# 8: SECURITY.md "Proxying" bad inputs
# --------------------------------------------------------------------------------------------


def test_ambiguous_paths_prefixes_and_queries(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-paths", "paths.localhost"
    s = setup(dev, ns, route(ns, "api", f"http://{host}/api", dev.echo_url,
                             policy=allow(f"{ns}/bot", deny={"or": [{"http_path": {"starts_with": "/api/admin"}}]})),
              serve=(host, "/api"))
    auth = f"Authorization: Bearer {s.token}\r\n"

    def get(target: str) -> Raw:
        return raw(dev, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode(),
                   wait_close=0)

    problems = []
    for target in ["/api/public/../admin", "/api/public/%2e%2e/admin", "/api/public/%2E%2E/admin",
                   "/api/public/..;/admin", "/api/public;/admin", "/api/admin%2Fx", "/api/public%2F..%2Fadmin",
                   "/api/public\\..\\admin", "/api/public%5C..%5Cadmin", "/api/public%00", "/api/admin%00.json",
                   "/api/public/%252e%252e/admin", "/api/public%252Fadmin", "/api/public/%C0%AE%C0%AE/admin",
                   "/api/./admin"]:
        r = get(target)
        try:
            assert r.status == 400, f"HTTP {r.status} {r.body[:200]!r}"
            assert r.json()["error"] == "invalid_request", r.body
        except (AssertionError, ValueError) as exc:
            problems.append(f"{target}: {exc}")
    assert not problems, "ambiguous paths were not refused:\n" + "\n".join(problems)

    # Prefixes match on segment boundaries; paths are judged and forwarded in canonical form.
    assert get("/apiadmin").status == 404
    assert get("/api-admin/x").status == 404
    for target, path in [("/api", "/api"), ("/api/", "/api/"), ("/api/x", "/api/x"), ("//api///x//y", "/api/x/y"),
                         ("/api/%7Euser/%61", "/api/~user/a")]:
        r = get(target)
        assert r.status == 200 and r.json()["path"] == path, (target, r.status, r.body[:200])

    # The query string never influences path rules, and reaches the upstream as sent.
    for target, status in [("/api/admin?x=/api/public", 403), ("/api/admin/?../public", 403),
                           ("/api/public?/api/admin", 200), ("/api/public?p=/../admin%2F%00", 200)]:
        r = get(target)
        assert r.status == status, (target, r.status, r.body[:200])
        if status == 200:
            assert r.json()["query"] == target.split("?", 1)[1], r.json()
        else:
            assert r.json()["error"] == "access_denied", r.body
    assert echoed(call(dev, host, "/api/still", token=s.token), "after the path probes")["path"] == "/api/still"


def test_spoofed_identity_headers_never_reach_the_upstream(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-spoof", "spoof.localhost"
    s = setup(dev, ns, route(ns, "spoof", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot"),
                             jwtClaimHeaders={"X-Note": "note"}),
              bot={"claims": {"note": "line one\tline two"}}, serve=(host, "/"))
    url = route_url(dev, ns, "spoof")
    auth = ("Authorization", f"Bearer {s.token}")

    r = h1(dev, "GET", "/", [("Host", host), auth, *SPOOFED, ("X-Forwarded-For", "10.9.9.9"),
                             ("X-Forwarded-Host", "evil.example"), ("X-Note", "spoofed")])
    headers = echoed(r, "spoofed headers")["headers"]
    leaked = sorted(k for k in headers if k.replace("_", "-") in {n.lower().replace("_", "-") for n, _ in SPOOFED}
                    and k != "x-portcullis-jwt-assertion")
    assert not leaked, f"spoofed headers reached the upstream: {leaked}"
    assert headers["x-portcullis-jwt-assertion"] != "forged.forged.forged"
    verify_assertion(dev, headers["x-portcullis-jwt-assertion"], aud=url, sub=f"serviceaccount:{ns}/bot")
    assert headers["x-forwarded-for"] == "127.0.0.1", headers
    assert headers["x-forwarded-host"] == host, headers
    assert headers["x-note"] == "line one\tline two", headers

    # `Connection:` cannot remove the headers the proxy adds.
    r = h1(dev, "GET", "/", [("Host", host), auth,
                             ("Connection", "keep-alive, X-Portcullis-Jwt-Assertion, X-Forwarded-For, X-Note")])
    headers = echoed(r, "Connection naming our headers")["headers"]
    verify_assertion(dev, headers["x-portcullis-jwt-assertion"], aud=url, sub=f"serviceaccount:{ns}/bot")
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-note"] == "line one\tline two", headers

    # CR/LF in a value that would become a claim-derived header, or a route header, is refused by the API,
    # whichever way it is written; the old value stays.
    evil = "a\r\nX-Injected: 1"
    cp = dev.kubectl("apply", "-f", "-", check=False, input=json.dumps(credential(ns, "bot", claims={"note": evil})))
    assert cp.returncode != 0 and "spec.claims.note" in cp.stderr, cp
    cp = dev.kubectl("patch", "sac", "bot", "-n", ns, "--type", "json", "--patch",
                     json.dumps([{"op": "replace", "path": "/spec/claims/note", "value": evil}]), check=False)
    assert cp.returncode != 0 and "spec.claims.note" in cp.stderr, cp
    cp = dev.kubectl("patch", "route", "spoof", "-n", ns, "--type", "merge", "--patch",
                     json.dumps({"spec": {"setRequestHeaders": {"X-Set": evil}}}), check=False)
    assert cp.returncode != 0 and "setRequestHeaders" in cp.stderr, cp
    token = fetch_token(dev, s.data)
    headers = echoed(call(dev, host, "/", token=token), "after the refused edits")["headers"]
    assert "x-injected" not in headers and "x-set" not in headers, headers
    assert headers["x-note"] == "line one\tline two", headers

    # The User-Agent never affects authentication.
    for agent in ("curl/8.0", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "kube-probe/1.32",
                  "Googlebot/2.1", "Prometheus/2.0", "portcullis", ""):
        assert call(dev, host, "/", headers={"User-Agent": agent}).status_code == 401, agent
        assert call(dev, host, "/", token=token, headers={"User-Agent": agent}).status_code == 200, agent


def test_http11_framing_ambiguity_is_refused_and_closed(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-framing", "framing.localhost"
    s = setup(dev, ns, route(ns, "framing", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              serve=(host, "/"))
    head = f"POST / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {s.token}\r\n"
    cases = {
        "two different Content-Length": "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "a Content-Length list": "Content-Length: 5, 6\r\n\r\nhello!",
        "a signed Content-Length (+)": "Content-Length: +5\r\n\r\nhello",
        "a signed Content-Length (-)": "Content-Length: -5\r\n\r\nhello",
        "a hex Content-Length": "Content-Length: 0x5\r\n\r\nhello",
        "Transfer-Encoding: xchunked": "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked, identity": "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "two Transfer-Encoding fields": "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        "space before the colon": "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "a vertical tab in Transfer-Encoding": "Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding folded (obs-fold)": "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        "a bare CR": "X-A: 1\rX-B: 2\r\n\r\n",
    }
    problems = []
    for what, rest in cases.items():
        r = raw(dev, (head + rest).encode("latin-1"))
        if r.status != 400 or not r.closed:
            problems.append(f"{what}: HTTP {r.status}, closed={r.closed}, {r.body[:120]!r}")
    r = raw(dev, f"POST / HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode())
    if r.status != 400 or not r.closed:
        problems.append(f"Transfer-Encoding on HTTP/1.0: HTTP {r.status}, closed={r.closed}")
    assert not problems, "ambiguous framing was not refused with 400 and close:\n" + "\n".join(problems)
    assert_still_serving(dev, host, s.token, "the framing probes")


def test_upgrades_connect_websocket_and_header_limits(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-upgrade", "upgrade.localhost"
    s = setup(dev, ns, route(ns, "upgrade", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              serve=(host, "/"))
    head = f"GET /u HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {s.token}\r\n"

    # h2c is never forwarded (the plain listener speaks HTTP/1.1 only; the upgrade is dropped).
    r = raw(dev, (head + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                  "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n").encode(), wait_close=0)
    headers = echoed(HttpResult(r.status or 0, {}, r.body), "Upgrade: h2c")["headers"]
    assert not {"upgrade", "http2-settings", "connection"} & set(headers), headers

    # CONNECT is refused.
    r = raw(dev, f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nAuthorization: Bearer {s.token}\r\n"
                 "Connection: close\r\n\r\n".encode(), wait_close=0)
    assert r.status == 405 and r.json()["error"] == "method_not_allowed", (r.status, r.body)
    assert b"\r\nallow: " in r.head.lower(), r.head

    # A WebSocket upgrade on a route that does not allow it: no Upgrade reaches the echo, no 101.
    r = raw(dev, (head + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n").encode(), wait_close=0)
    assert r.status == 200, (r.status, r.head)
    headers = json.loads(r.body)["headers"]
    assert "upgrade" not in headers and "upgrade" not in headers.get("connection", "").lower(), headers

    # Limits: a 40 KiB header, 120 header fields.
    r = raw(dev, (head + f"X-Big: {'a' * 40 * 1024}\r\n\r\n").encode())
    assert (r.status, r.closed) == (431, True), (r.status, r.closed, r.head)
    r = raw(dev, (head + "".join(f"X-H{i}: {i}\r\n" for i in range(120)) + "\r\n").encode())
    assert (r.status, r.closed) == (431, True), (r.status, r.closed, r.head)
    assert_still_serving(dev, host, s.token, "the upgrade and limit probes")


def test_slowloris_connection_is_closed_at_the_header_timeout(identity_dev: DevServer):
    """A client that never finishes its headers (one header line a second) is cut off by the
    header read timeout (10 s), while other clients are served."""
    dev, ns, host = identity_dev, "e2e-proxy-slowloris", "slowloris.localhost"
    s = setup(dev, ns, route(ns, "slowloris", f"http://{host}", dev.echo_url, policy=allow(f"{ns}/bot")),
              serve=(host, "/"))
    url = urlsplit(dev.http_url)
    deadline = time.monotonic() + 40  # a bound for the test, far above the 10 s header timeout
    answer = b""
    closed = False
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode())
        sock.settimeout(1)
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                chunk = sock.recv(4096)
                answer += chunk
                closed = chunk == b""
            except socket.timeout:
                echoed(call(dev, host, "/", token=s.token), "another client during the slowloris")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
    assert closed, "the server kept a connection whose headers never ended"
    assert not answer or answer.startswith(b"HTTP/1.1 408"), f"unexpected answer {answer[:200]!r}"
    assert_still_serving(dev, host, s.token, "the slowloris")


# HTTP/1.1 framing that two parsers could read differently: 400 and a closed connection
# (src/proxy/framing.rs watches the byte stream below hyper, which would accept both).


def test_content_length_with_transfer_encoding_is_refused(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-clte", "clte.localhost"
    dev.apply_docs(namespace(ns), route(ns, "clte", f"http://{host}", dev.echo_url,
                                        allowPublicUnauthenticatedAccess=True))
    wait_for(lambda: call(dev, host, "/").status_code == 200, 30, what=f"{host} served")
    r = raw(dev, f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\n".encode())
    assert (r.status, r.closed) == (400, True), (r.status, r.closed, r.body[:300])


def test_bare_lf_line_endings_are_refused(identity_dev: DevServer):
    dev, ns, host = identity_dev, "e2e-proxy-barelf", "barelf.localhost"
    dev.apply_docs(namespace(ns), route(ns, "barelf", f"http://{host}", dev.echo_url,
                                        allowPublicUnauthenticatedAccess=True))
    wait_for(lambda: call(dev, host, "/").status_code == 200, 30, what=f"{host} served")
    r = raw(dev, f"GET / HTTP/1.1\nHost: {host}\nX-A: 1\n\n".encode())
    assert (r.status, r.closed) == (400, True), (r.status, r.closed, r.body[:300])


def test_overlong_request_line_gets_414(identity_dev: DevServer):
    """A request-target over 8 KiB is a 414; a whole head over the 32 KiB header limit is a 431
    before any request-target is looked at."""
    dev, ns, host = identity_dev, "e2e-proxy-uri", "uri.localhost"
    dev.apply_docs(namespace(ns), route(ns, "uri", f"http://{host}", dev.echo_url,
                                        allowPublicUnauthenticatedAccess=True))
    wait_for(lambda: call(dev, host, "/").status_code == 200, 30, what=f"{host} served")
    r = raw(dev, f"GET /{'a' * 9 * 1024} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert r.status == 414, (r.status, r.closed, r.head[:200])
    r = raw(dev, f"GET /{'a' * 40 * 1024} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert (r.status, r.closed) == (431, True), (r.status, r.closed, r.head[:200])


# --------------------------------------------------------------------------------------------
# 9: the https listener
# --------------------------------------------------------------------------------------------


def test_https_listener_tls_http2_and_misdirected_requests(identity_dev: DevServer):
    """A route with its own certificate (a `kubernetes.io/tls` Secret made with openssl) beside the
    dev CA's certificate, which the authenticate host `localhost` is served with. A request whose
    Host would have been served another certificate than its connection's SNI gets 421."""
    dev, ns = identity_dev, "e2e-proxy-tls"
    own, plain = "tls-own.localhost", "tls-dev.localhost"
    auth_host = urlsplit(dev.issuer).hostname
    port = port_of(dev.https_url)
    own_ca, crt, key = make_certificate(dev.work_dir / "own-cert", own)
    s = setup(dev, ns)
    dev.kubectl("create", "secret", "tls", "own-tls", "-n", ns, f"--cert={crt}", f"--key={key}")
    dev.apply_docs(
        route(ns, "own-cert", f"https://{own}", dev.echo_url, policy=allow(f"{ns}/bot"),
              tls={"secretName": "own-tls"}),
        route(ns, "dev-cert", f"https://{plain}", dev.echo_url, policy=allow(f"{ns}/bot")),
    )
    route_condition(dev, ns, "own-cert", "Ready", "True")
    route_condition(dev, ns, "dev-cert", "Ready", "True")
    resolve = [arg for h in (own, plain, auth_host) for arg in ("--resolve", f"{h}:{port}:127.0.0.1")]
    auth = ["-H", f"Authorization: Bearer {s.token}"]

    def https(sni: str, ca: Path, *extra: str) -> tuple[int, dict, bytes, str]:
        return curl(*resolve, "--cacert", str(ca), *auth, *extra, f"https://{sni}:{port}/tls")

    # The route's own certificate, over HTTP/2 and HTTP/1.1.
    status, _, body, version = wait_for(lambda: (r := https(own, own_ca))[0] == 200 and r, 30,
                                        what=f"{own} with its own certificate")
    assert version == "2", f"HTTP/{version}"
    echo = echoed(HttpResult(status, {}, body), "the route with its own certificate")
    assert echo["headers"]["x-forwarded-proto"] == "https", echo
    verify_assertion(dev, echo["headers"]["x-portcullis-jwt-assertion"], aud=f"https://{own}",
                     sub=f"serviceaccount:{ns}/bot")
    status, _, _, version = https(own, own_ca, "--http1.1")
    assert (status, version) == (200, "1.1")
    # It really is another certificate: the dev CA does not verify it.
    cp = subprocess.run(["curl", "-sS", "--max-time", "20", *resolve, "--cacert", str(dev.ca_path),
                         f"https://{own}:{port}/"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 60, f"the dev CA verified {own}'s own certificate: {cp.returncode} {cp.stderr}"

    # A route without a certificate is served the dev CA's, like the authenticate host: a connection
    # made for one may carry requests for the other.
    status, _, body, version = https(auth_host, dev.ca_path, "-H", f"Host: {plain}:{port}")
    assert (status, version) == (200, "2"), (status, version, body[:300])
    assert echoed(HttpResult(status, {}, body))["headers"]["x-forwarded-host"] == f"{plain}:{port}"

    # A Host that would get another certificate than the connection's SNI: 421, on h2 and HTTP/1.1.
    for sni, ca, other in ((own, own_ca, plain), (own, own_ca, auth_host), (auth_host, dev.ca_path, own)):
        for flag in ("--http2", "--http1.1"):
            status, headers, body, _ = https(sni, ca, flag, "-H", f"Host: {other}:{port}")
            assert_refusal(HttpResult(status, headers, body), 421, "misdirected_request",
                           f"SNI {sni}, Host {other} ({flag})")
    assert https(own, own_ca)[0] == 200, "the route after the misdirected requests"


def test_dev_certificate_verifies_for_localhost_route_hosts(identity_dev: DevServer):
    """`portcullis dev` issues a certificate from its CA for the exact name a client asks for, so
    a `*.localhost` route host verifies with `ca.crt` in curl and Python (a `*.localhost` wildcard
    would not: TLS clients refuse a wildcard directly under one label)."""
    dev, ns, host = identity_dev, "e2e-proxy-devcert", "devcert.localhost"
    port = port_of(dev.https_url)
    dev.apply_docs(namespace(ns), route(ns, "devcert", f"https://{host}", dev.echo_url,
                                        allowPublicUnauthenticatedAccess=True))
    route_condition(dev, ns, "devcert", "Ready", "True")
    cp = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}",
                         "--resolve", f"{host}:{port}:127.0.0.1", "--cacert", str(dev.ca_path),
                         f"https://{host}:{port}/"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0 and cp.stdout == "200", f"curl exited {cp.returncode}: {cp.stderr.strip()}"
    ctx = ssl.create_default_context(cafile=str(dev.ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host):
            pass
