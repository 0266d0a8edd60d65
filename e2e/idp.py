"""The people's identity provider of the end-to-end suite: the example OpenID Connect provider
(`examples/oidc-provider/provider.mjs`, panva's `oidc-provider`) started as a process, plus a way
to make Python clients resolve `*.localhost` the way browsers and curl do.

    provider = start_provider(work_dir, redirect_uris=["http://localhost:8080/oauth2/callback"])
    provider.issuer, provider.client_id, provider.client_secret, provider.discovery()
    provider.stop()
    tokens = code_flow_tokens(provider, "alice")   # a real client's sign-in: id_token, access_token

The fixtures `idp_factory` and `idp` in conftest.py wrap this (stopped at teardown, stderr in the
report of a failing test). `examples/oidc-provider/node_modules` comes from `e2e/node/install`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urljoin

import requests
from authlib.integrations.requests_client import OAuth2Session

REPO_ROOT = Path(__file__).resolve().parent.parent
PROVIDER_DIR = REPO_ROOT / "examples" / "oidc-provider"
START_TIMEOUT = 30.0

# The example provider's users (examples/oidc-provider/README.md).
PASSWORD = "password"
USERS = {
    "alice": {"sub": "alice", "email": "alice@example.com", "email_verified": True, "name": "Alice Example",
              "groups": ["payments", "eng"]},
    "bob": {"sub": "bob", "email": "bob@other.example", "email_verified": True, "groups": []},
}


@dataclass(repr=False)
class OidcProvider:
    """One running provider.mjs."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    proc: subprocess.Popen
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    extra_clients: list[dict] = field(default_factory=list)  # with their secrets

    def __repr__(self):
        state = "running" if self.running() else f"exited {self.proc.returncode}"
        return f"<OidcProvider {self.issuer} {state}>"

    def running(self) -> bool:
        return self.proc.poll() is None

    def discovery(self) -> dict:
        r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        assert r.status_code == 200, f"discovery: HTTP {r.status_code} {r.text[:300]}"
        return r.json()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stderr_tail(self, lines: int = 100) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def _pdeathsig():  # in the child: die with the test process rather than leak a provider
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def start_provider(work_dir: Path, *, redirect_uris: Iterable[str],
                   post_logout_redirect_uris: Iterable[str] = (), port: int = 0,
                   client_id: str = "portcullis-dev", client_secret: str | None = None,
                   id_token_ttl: int | None = None, access_token_ttl: int | None = None,
                   refresh_token_ttl: int | None = None, extra_clients: Iterable[dict] = (),
                   name: str = "idp") -> OidcProvider:
    """Start provider.mjs on 127.0.0.1 (`port` 0 = a free one) for one client with these redirect
    URIs and a fresh random secret (unless given); return once discovery answers.
    `extra_clients`: more clients (`EXTRA_CLIENTS`, examples/oidc-provider/README.md), each a dict
    with `client_id`, `redirect_uris` and optionally `id_token_ttl`; a fresh secret is added to
    each that has none."""
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise AssertionError(f"{PROVIDER_DIR}/node_modules is missing: run e2e/node/install")
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for k in ("ISSUER", "HOST"):
        env.pop(k, None)
    env.update({
        "PORT": str(port),
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret or secrets.token_urlsafe(24),
        "REDIRECT_URIS": ",".join(redirect_uris),
        "POST_LOGOUT_REDIRECT_URIS": ",".join(post_logout_redirect_uris),
        "NO_COLOR": "1",
    })
    extra = [{"client_secret": secrets.token_urlsafe(24), **c} for c in extra_clients]
    if extra:
        env["EXTRA_CLIENTS"] = json.dumps(extra)
    else:
        env.pop("EXTRA_CLIENTS", None)
    for key, value in (("ID_TOKEN_TTL", id_token_ttl), ("ACCESS_TOKEN_TTL", access_token_ttl),
                       ("REFRESH_TOKEN_TTL", refresh_token_ttl)):
        if value is not None:
            env[key] = str(value)
        else:
            env.pop(key, None)
    stderr_path = work_dir / f"{name}.stderr.log"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(["node", str(PROVIDER_DIR / "provider.mjs")], cwd=PROVIDER_DIR, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                preexec_fn=_pdeathsig)
    lines: list[str] = []
    listening = threading.Event()

    def pump():
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if line.startswith("listening "):
                listening.set()

    threading.Thread(target=pump, daemon=True).start()
    provider = OidcProvider(issuer="", client_id=client_id, client_secret=env["CLIENT_SECRET"],
                            redirect_uris=list(redirect_uris),
                            post_logout_redirect_uris=list(post_logout_redirect_uris),
                            proc=proc, stderr_path=stderr_path, stdout_lines=lines, extra_clients=extra)
    deadline = time.monotonic() + START_TIMEOUT
    while not listening.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise AssertionError(f"provider.mjs did not print `listening` (exit {proc.returncode}):\n"
                                 f"{provider.stderr_tail()}")
    m = next(re.match(r"^listening (\S+)$", line) for line in lines if line.startswith("listening "))
    provider.issuer = m.group(1)
    last: object = None
    while True:
        try:
            doc = provider.discovery()
            assert doc["issuer"] == provider.issuer, doc["issuer"]
            return provider
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        if proc.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise AssertionError(f"provider discovery never answered ({last!r}):\n{provider.stderr_tail()}")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# signing in at the provider without a browser
# --------------------------------------------------------------------------------------------

SCOPE = "openid email profile groups"


def sign_in_at_provider(provider: OidcProvider, jar: requests.Session, authorize_url: str, user: str,
                        redirect_uri: str) -> str:
    """Open `authorize_url` with the cookie jar `jar`, sign in as `user` on the provider's form and
    return the redirect to `redirect_uri` it answers with (code, state, iss), without following it."""
    r = jar.get(authorize_url, timeout=20)  # the provider's sign-in page
    assert r.status_code == 200 and r.url.startswith(f"{provider.issuer}/interaction/"), (
        r.status_code, r.url, r.text[:300])
    r = jar.post(f"{r.url}/login", data={"login": user, "password": PASSWORD}, allow_redirects=False,
                 timeout=20)
    for _ in range(4):
        location = urljoin(r.url, r.headers.get("Location", ""))
        if location.startswith(f"{redirect_uri}?"):
            return location
        assert r.status_code in (302, 303) and r.headers.get("Location"), (r.status_code, r.text[:300])
        r = jar.get(location, allow_redirects=False, timeout=20)
    raise AssertionError(f"the provider never redirected to {redirect_uri}")


def code_flow_tokens(provider: OidcProvider, user: str, *, client_id: str | None = None,
                     scope: str = SCOPE) -> dict:
    """The provider's token response for `user` signing in to client `client_id` (the first client
    by default, else one of `extra_clients`, at its first redirect URI), the way a command-line
    client does it: authlib's authorization-code flow with PKCE S256, state and nonce, the
    provider's sign-in form filled in by a cookie jar, the code exchanged with client_secret_basic."""
    if client_id is None or client_id == provider.client_id:
        client_id, secret, redirect_uri = provider.client_id, provider.client_secret, provider.redirect_uris[0]
    else:
        client = next(c for c in provider.extra_clients if c["client_id"] == client_id)
        secret, redirect_uri = client["client_secret"], client["redirect_uris"][0]
    meta = provider.discovery()
    verifier = secrets.token_urlsafe(48)
    with OAuth2Session(client_id, secret, scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256",
                       token_endpoint_auth_method="client_secret_basic") as oauth:
        url, state = oauth.create_authorization_url(meta["authorization_endpoint"], nonce=secrets.token_urlsafe(16),
                                                    code_verifier=verifier)
        with requests.Session() as jar:
            back = sign_in_at_provider(provider, jar, url, user, redirect_uri)
        token = oauth.fetch_token(meta["token_endpoint"], authorization_response=back, state=state,
                                  code_verifier=verifier)
    assert token.get("id_token"), f"no id_token in {sorted(token)}"
    return dict(token)


# --------------------------------------------------------------------------------------------
# *.localhost for Python clients
# --------------------------------------------------------------------------------------------


def _is_localhost(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


@contextlib.contextmanager
def localhost_names(address: str = "127.0.0.1", ports: dict[int, int] | None = None) -> Iterator[None]:
    """While active, `localhost` and every `*.localhost` name resolve to `address` (IPv4 only)
    for everything in this process that resolves through `socket.getaddrinfo` (requests, urllib3,
    http.client), as browsers and curl resolve them (RFC 6761). The Host header, cookies and URLs
    keep the name, so a `requests.Session` cookie jar sees `app.localhost` as a real host.
    `ports` maps the port a URL names to the one connected to, e.g. `{80: 8080}`: then
    `http://app.localhost/` reaches 127.0.0.1:8080 with `Host: app.localhost`, as it would behind
    a load balancer on port 80."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if _is_localhost(host):
            if ports and port is not None and int(port) in ports:
                port = ports[int(port)]
            return real(address, port, socket.AF_INET, type, proto, flags)
        return real(host, port, family, type, proto, flags)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real
