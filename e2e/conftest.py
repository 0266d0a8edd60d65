"""Helper layer of the black-box end-to-end suite.

The suite drives the real `portcullis` binary with the machine's real `kubectl`, as a user would.
Nothing here imports Portcullis code: everything goes through processes, files and HTTP.

Binary: `E2E_PORTCULLIS_BIN`, else `<repo>/target/release/portcullis`, else
`$CARGO_TARGET_DIR/release/portcullis`.  The binary is hard-linked (or copied) once per session so a
rebuild in the middle of a run cannot mix two versions.
kubectl: `KUBECTL`, else `/usr/bin/kubectl`, else the first `kubectl` on PATH.
helm: `HELM`, else `.tools/bin/helm` (installed by scripts/install-test-deps).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import yaml

from browser import Browser
from idp import localhost_names, start_provider

REPO_ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Every DevServer records the API calls it serves here (`--record-api-access`), so that
# test_zz_rbac.py can compare what Portcullis's controller called with the chart's RBAC.
API_ACCESS_LOGS: list[Path] = []

# Deadlines. Generous: the machine is shared and small, and a debug build is slow to start.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
KUBECTL_TIMEOUT = 60.0
BINARY_WAIT = 90.0


# --------------------------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------------------------


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Call `fn` until it returns something truthy and return that; exceptions count as "not yet".

    On the deadline raise AssertionError with the last value or exception, so a failing poll says
    what it was waiting for and what it saw instead.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = fn()
            last_exc = None
            if last:
                return last
        except ServerExited:  # no point waiting for a dead process
            raise
        except AssertionError as exc:  # assertion-style predicates
            last_exc = exc
        except Exception as exc:  # noqa: BLE001 - any error is "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last exception: {last_exc!r}" if last_exc is not None else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or fn!r}; {detail}")
        time.sleep(interval)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class KubeDumper(yaml.SafeDumper):
    """PyYAML emits YAML 1.1 but leaves `y`/`n` unquoted, which kubectl's YAML parser reads as
    booleans; quote every string that some YAML 1.1 reader could take for a non-string."""


_AMBIGUOUS = re.compile(r"^(y|n|yes|no|on|off|true|false|null|~|[-+]?[0-9][0-9_.:eE+-]*)$", re.I)


def _repr_str(dumper: yaml.SafeDumper, value: str):
    style = "'" if _AMBIGUOUS.match(value) else None
    if "\n" in value:
        style = "|"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


KubeDumper.add_representer(str, _repr_str)


def to_yaml(*docs: dict) -> str:
    return yaml.dump_all(list(docs), Dumper=KubeDumper, sort_keys=False)


def write_yaml(path: Path, *docs: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(*docs))
    return path


def configmap(name: str, data: dict | None = None, namespace: str | None = None, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data or {})}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


# --------------------------------------------------------------------------------------------
# binaries
# --------------------------------------------------------------------------------------------


def _binary_candidates() -> list[Path]:
    env = os.environ.get("E2E_PORTCULLIS_BIN")
    if env:
        return [Path(env)]
    out = [REPO_ROOT / "target" / "release" / "portcullis"]
    if os.environ.get("CARGO_TARGET_DIR"):
        out.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "portcullis")
    return out


def _find_kubectl() -> str:
    env = os.environ.get("KUBECTL")
    if env:
        return env
    if os.access("/usr/bin/kubectl", os.X_OK):
        return "/usr/bin/kubectl"
    found = shutil.which("kubectl")
    if not found:
        pytest.exit("kubectl not found (set KUBECTL or install kubectl 1.32 at /usr/bin/kubectl)", returncode=4)
    return found


@pytest.fixture(scope="session")
def session_dir():
    d = Path(tempfile.mkdtemp(prefix="portcullis-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def portcullis_bin(session_dir) -> Path:
    """A stable snapshot of the binary under test.

    When `E2E_PORTCULLIS_BIN` is set but the file is momentarily missing (being rebuilt), wait for it.
    """
    candidates = _binary_candidates()

    def existing():
        return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)

    found = existing()
    if found is None and os.environ.get("E2E_PORTCULLIS_BIN"):
        deadline = time.monotonic() + BINARY_WAIT
        while found is None and time.monotonic() < deadline:
            time.sleep(1)
            found = existing()
    if found is None:
        pytest.exit(
            "portcullis binary not found; tried " + ", ".join(map(str, candidates))
            + " (build it with `cargo build --release` or set E2E_PORTCULLIS_BIN)",
            returncode=4,
        )
    snap = session_dir / "bin" / "portcullis"
    snap.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(found, snap)
    except OSError:
        shutil.copy2(found, snap)
    return snap


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    return _find_kubectl()


@pytest.fixture(scope="session")
def helm_bin() -> str:
    found = os.environ.get("HELM") or str(REPO_ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        pytest.fail(f"helm not found at {found}: run scripts/install-test-deps or set HELM")
    return found


def helm(helm_bin: str, *args: str, home: Path, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """Run helm with its cache, config and data under `home` (and against `kubeconfig` when given);
    `check=True` fails the test on a non-zero exit."""
    env = dict(os.environ, HOME=str(home), HELM_CACHE_HOME=str(home / "helm-cache"),
               HELM_CONFIG_HOME=str(home / "helm-config"), HELM_DATA_HOME=str(home / "helm-data"))
    env.pop("KUBECONFIG", None)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    cp = subprocess.run([helm_bin, *map(str, args)], capture_output=True, text=True, env=env,
                        timeout=timeout, stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed ({cp.returncode}):\n"
                             f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}")
    return cp


# --------------------------------------------------------------------------------------------
# the server under test
# --------------------------------------------------------------------------------------------


def _pdeathsig():  # runs in the child: die with the test process rather than leak a server
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ServerExited(AssertionError):
    pass


@dataclass(repr=False)
class DevServer:
    """One `portcullis dev` process, started once (restart = a new instance on the same data dir)."""

    binary: Path
    kubectl_bin: str
    data_dir: Path
    work_dir: Path
    manifests: list[Path] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    name: str = "server"
    api_addr: str = "127.0.0.1:0"
    http_addr: str = "127.0.0.1:0"
    https_addr: str = "127.0.0.1:0"

    proc: subprocess.Popen | None = None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_path: Path | None = None
    kubeconfig: Path | None = None
    admin_url: str | None = None
    api_url: str | None = None
    ca_path: Path | None = None
    http_url: str | None = None  # from the `http` line, when the binary prints one
    https_url: str | None = None  # from the `https` line, when the binary prints one
    issuer: str | None = None  # from the `issuer` line, when the binary prints one
    echo_url: str | None = None  # from the `echo upstream` line

    @property
    def api_access_log(self) -> Path:
        return self.work_dir / f"{self.name}.api-access.jsonl"
    cache_dir: Path | None = None
    _stdout_thread: threading.Thread | None = None

    def __repr__(self):
        state = "running" if self.running() else f"exited {self.proc.returncode}" if self.proc else "not started"
        return f"<DevServer {self.name} {self.api_url or ''} {state}>"

    # ---- lifecycle ---------------------------------------------------------------------------

    def args(self) -> list[str]:
        a = [
            str(self.binary), "dev",
            "--data-dir", str(self.data_dir),
            "--api-addr", self.api_addr,
            "--admin-addr", "127.0.0.1:0",
            "--http-addr", self.http_addr,
            "--https-addr", self.https_addr,
            "--ssh-addr", "127.0.0.1:0",
            "--echo-addr", "127.0.0.1:0",
            "--record-api-access", str(self.api_access_log),
        ]
        for m in self.manifests:
            a += ["--manifests", str(m)]
        return a + list(self.extra_args)

    def spawn(self) -> "DevServer":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.api_access_log not in API_ACCESS_LOGS:
            API_ACCESS_LOGS.append(self.api_access_log)
        self.stderr_path = self.work_dir / f"{self.name}.stderr.log"
        self.cache_dir = self.work_dir / f"{self.name}.kubectl-cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.pop("KUBECONFIG", None)
        self.proc = subprocess.Popen(
            self.args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=self.work_dir,
            env=env,
            preexec_fn=_pdeathsig,
        )
        err.close()
        self._stdout_thread = threading.Thread(target=self._pump_stdout, daemon=True)
        self._stdout_thread.start()
        return self

    def _pump_stdout(self):
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            self.stdout_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def start(self) -> "DevServer":
        """Spawn and wait until the printed lines are there and /readyz answers 200."""
        self.spawn()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT):
        def printed():
            self._check_alive("while starting")
            joined = "\n".join(self.stdout_lines)
            kc = re.search(r"^export KUBECONFIG=(\S+)\s*$", joined, re.M)
            adm = re.search(r"admin (http://\S+)", joined)
            api = re.search(r"kubernetes api (https://\S+)", joined)
            ca = re.search(r"ca certificate (\S+)", joined)
            if not (kc and adm):
                return None
            self.kubeconfig = Path(kc.group(1))
            self.admin_url = adm.group(1).rstrip("/")
            self.api_url = api.group(1) if api else None
            self.ca_path = Path(ca.group(1)) if ca else None
            http_line = re.search(r"^portcullis dev: http (http://\S+)", joined, re.M)
            https_line = re.search(r"^portcullis dev: https (https://\S+)", joined, re.M)
            issuer = re.search(r"^portcullis dev: issuer (\S+)", joined, re.M)
            self.http_url = http_line.group(1).rstrip("/") if http_line else None
            self.https_url = https_line.group(1).rstrip("/") if https_line else None
            self.issuer = issuer.group(1) if issuer else None
            echo = re.search(r"^portcullis dev: echo upstream (http://\S+)", joined, re.M)
            self.echo_url = echo.group(1).rstrip("/") if echo else None
            return True

        wait_for(printed, timeout, what=f"{self.name}: the `export KUBECONFIG=` and admin lines on stdout")

        def ready():
            self._check_alive("while waiting for /readyz")
            return self.admin_get("/readyz")[0] == 200

        wait_for(ready, timeout, what=f"{self.name}: GET {self.admin_url}/readyz -> 200")
        if self.api_url is None:
            self.api_url = self.kubeconfig_doc()["clusters"][0]["cluster"]["server"]

    def _check_alive(self, when: str):
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerExited(
                f"{self.name} exited with code {self.proc.returncode} {when}\n--- stderr ---\n{self.stderr_tail()}"
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the exit; returns the exit code (negative = killed by signal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                raise AssertionError(f"{self.name} did not exit within {timeout:.0f}s of signal {sig}")
        if self._stdout_thread:
            self._stdout_thread.join(timeout=5)
        return self.proc.returncode

    def kill9(self) -> int:
        return self.stop(signal.SIGKILL)

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:.0f}s\n{self.stderr_tail()}")

    def stderr_text(self) -> str:
        if self.stderr_path and self.stderr_path.exists():
            return strip_ansi(self.stderr_path.read_text(errors="replace"))
        return ""

    def stderr_tail(self, lines: int = 200) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    # ---- kubectl -------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess:
        """Run kubectl against this server; `check=True` fails the test on a non-zero exit."""
        assert self.kubeconfig is not None, "server not started"
        cmd = [self.kubectl_bin, "--cache-dir", str(self.cache_dir), *map(str, args)]
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.work_dir))
        try:
            cp = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"kubectl timed out after {timeout:.0f}s: {' '.join(cmd[3:])}\n"
                                 f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}")
        if check and cp.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(cmd[3:])} exited {cp.returncode}\n"
                f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"
            )
        return cp

    def kubectl_fails(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run kubectl and require a failure (exit code 1); returns the CompletedProcess."""
        cp = self.kubectl(*args, check=False, input=input)
        assert cp.returncode == 1, (
            f"expected `kubectl {' '.join(map(str, args))}` to fail with exit code 1, got {cp.returncode}\n"
            f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"
        )
        return cp

    def kubectl_popen(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.work_dir))
        cmd = [self.kubectl_bin, "--cache-dir", str(self.cache_dir), *map(str, args)]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, preexec_fn=_pdeathsig)

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exists(self, *args: str) -> bool:
        """`kubectl get ...` succeeds (True) or fails with NotFound (False); anything else fails."""
        cp = self.kubectl("get", *args, "-o", "name", check=False)
        if cp.returncode == 0:
            return True
        assert "NotFound" in cp.stderr or "not found" in cp.stderr, (
            f"kubectl get {' '.join(args)} failed for another reason than NotFound:\n{cp.stderr}")
        return False

    def apply_docs(self, *docs: dict, extra: Iterable[str] = ()) -> subprocess.CompletedProcess:
        return self.kubectl("apply", *extra, "-f", "-", input=to_yaml(*docs))

    def create_docs(self, *docs: dict, check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl("create", "-f", "-", input=to_yaml(*docs), check=check)

    # ---- raw HTTP ------------------------------------------------------------------------------

    def kubeconfig_doc(self) -> dict:
        assert self.kubeconfig is not None
        return yaml.safe_load(self.kubeconfig.read_text())

    def token(self) -> str:
        return self.kubeconfig_doc()["users"][0]["user"]["token"]

    def ssl_context(self) -> ssl.SSLContext:
        cluster = self.kubeconfig_doc()["clusters"][0]["cluster"]
        if "certificate-authority-data" in cluster:
            pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
            return ssl.create_default_context(cadata=pem)
        return ssl.create_default_context(cafile=cluster["certificate-authority"])

    def api(self, method: str, path: str, body: Any = None, *, headers: dict | None = None,
            token: str | None | bool = True, timeout: float = 30.0) -> "HttpResult":
        """One request to the embedded API. `body`: dict/list (JSON-encoded), str or bytes.

        `token=True` uses the kubeconfig's token, a string uses that token, None/False sends none.
        A server that answers and then closes the connection while the body is still being sent
        (e.g. 413) is fine: the answer is read anyway.
        """
        assert self.api_url is not None
        u = urllib.parse.urlsplit(self.api_url)
        h = {"Accept": "application/json"}
        if token is True:
            h["Authorization"] = f"Bearer {self.token()}"
        elif token:
            h["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        h.update(headers or {})
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=self.ssl_context(), timeout=timeout)
        try:
            send_error = None
            try:
                conn.request(method, path, body=body, headers=h)
            except OSError as exc:  # BrokenPipe, ConnectionReset, SSLEOFError ...
                send_error = exc
            try:
                resp = conn.getresponse()
            except (http.client.HTTPException, OSError) as exc:
                raise AssertionError(f"{method} {path}: no response (send error {send_error!r}, read error {exc!r})")
            data = resp.read()
            headers: dict[str, str] = {}
            for k, v in resp.getheaders():  # repeated headers (Warning) joined as HTTP allows
                headers[k.lower()] = f"{headers[k.lower()]}, {v}" if k.lower() in headers else v
            return HttpResult(resp.status, headers, data)
        finally:
            conn.close()

    def admin_get(self, path: str) -> tuple[int, bytes]:
        assert self.admin_url is not None
        u = urllib.parse.urlsplit(self.admin_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


@dataclass
class HttpResult:
    status: int
    headers: dict
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"response is not JSON (HTTP {self.status}): {self.body[:500]!r}")

    def __repr__(self):
        return f"HttpResult(status={self.status}, body={self.body[:400]!r})"


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def dev_factory(request, portcullis_bin, kubectl_bin, tmp_path):
    """Make (not start) servers; every server made is stopped at teardown and its stderr is attached
    to the test report when the test fails."""
    made: list[DevServer] = []
    request.node._portcullis_servers = made

    def make(data_dir: Path | None = None, manifests: Iterable[Path] = (), extra_args: Iterable[str] = (),
             name: str | None = None, api_addr: str = "127.0.0.1:0", http_addr: str = "127.0.0.1:0",
             https_addr: str = "127.0.0.1:0") -> DevServer:
        s = DevServer(
            binary=portcullis_bin, kubectl_bin=kubectl_bin,
            data_dir=Path(data_dir) if data_dir else tmp_path / "data",
            work_dir=tmp_path, manifests=[Path(m) for m in manifests], extra_args=list(extra_args),
            name=name or f"server{len(made) + 1}", api_addr=api_addr, http_addr=http_addr,
            https_addr=https_addr,
        )
        made.append(s)
        return s

    yield make
    for s in made:
        if s.running():
            with contextlib.suppress(Exception):
                s.stop(timeout=15)
            if s.running():
                s.proc.kill()
    # A panic is a bug even when the test's assertions held (e.g. a background task died).
    panics = {s.name: m.group(0) for s in made if (m := re.search(r"panicked at .*", s.stderr_text()))}
    if panics:
        pytest.fail(f"portcullis panicked: {panics}", pytrace=False)


@pytest.fixture
def dev(dev_factory) -> DevServer:
    """A started `portcullis dev` with a fresh data dir."""
    return dev_factory().start()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for settings that must name the port
    before the server starts, such as `authenticateURL`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def identity_dev(dev_factory, tmp_path) -> DevServer:
    """A started `portcullis dev` whose identity endpoints live on its https listener:
    `authenticateURL: https://localhost:<https port>` in a `--config` file, so OAuth clients that
    insist on https (openid-client) discover and use it, trusting the dev CA (`ca_path`).

    `issuer` is that URL (the printed `issuer` line must agree when the binary prints one). The port
    is picked before the start; when another process takes it in between, it starts again on
    another port."""
    for attempt in range(3):
        port = free_port()
        authenticate_url = f"https://localhost:{port}"
        config = write_yaml(tmp_path / f"identity-{attempt}.yaml", {"authenticateURL": authenticate_url})
        s = dev_factory(data_dir=tmp_path / f"identity-data-{attempt}", extra_args=["--config", str(config)],
                        https_addr=f"127.0.0.1:{port}", name=f"identity{attempt + 1}")
        try:
            s.start()
        except ServerExited as exc:
            if attempt < 2 and "in use" in str(exc).lower():
                continue
            raise
        assert s.issuer in (None, authenticate_url), f"printed issuer {s.issuer!r}, configured {authenticate_url!r}"
        s.issuer = authenticate_url
        s.https_url = s.https_url or f"https://127.0.0.1:{port}"
        if s.ca_path is None:
            s.ca_path = s.data_dir / "ca.crt"
        return s
    raise AssertionError("unreachable")


@pytest.fixture
def kubectl(dev) -> Callable[..., subprocess.CompletedProcess]:
    """`kubectl(*args, check=True, input=None)` against the `dev` server."""
    return dev.kubectl


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # `item.rep_setup` / `rep_call` / `rep_teardown`: fixtures look at these in their teardown to
    # keep logs of a failed test (test_people_sessions.py copies them to the artifacts).
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        # Servers and logs registered on the test or on an enclosing node (module-scoped fixtures
        # register on the module).
        nodes = list(reversed(item.listchain()))
        for s in (s for node in nodes for s in getattr(node, "_portcullis_servers", [])):
            if s.stderr_path is not None:
                report.sections.append(
                    (f"portcullis stderr ({s!r}, {report.when})", s.stderr_tail(300) or "<empty>"))
                if s.stdout_lines:
                    report.sections.append((f"portcullis stdout ({s.name})", "\n".join(s.stdout_lines[-50:])))
        for title, read in (entry for node in nodes for entry in getattr(node, "_e2e_logs", [])):
            with contextlib.suppress(Exception):
                report.sections.append((title, read() or "<empty>"))


# --------------------------------------------------------------------------------------------
# people: the example OIDC provider, the browser, *.localhost for Python clients
# --------------------------------------------------------------------------------------------


def add_log(node, title: str, read: Callable[[], str]) -> None:
    """Attach `read()` to the report of every failing test under `node` (a test, or a module for
    module-scoped fixtures)."""
    if not hasattr(node, "_e2e_logs"):
        node._e2e_logs = []
    node._e2e_logs.append((title, read))


@pytest.fixture
def idp_factory(request, tmp_path):
    """`idp_factory(redirect_uris=[...], post_logout_redirect_uris=[...], **kw)` starts the example
    OIDC provider (examples/oidc-provider, see e2e/idp.py) on a free port with a fresh client
    secret and returns an `OidcProvider` (`issuer`, `client_id`, `client_secret`); every one is
    stopped at teardown and its stderr is in the report of a failing test."""
    made = []

    def make(**kw):
        kw.setdefault("name", f"idp{len(made) + 1}")
        provider = start_provider(tmp_path, **kw)
        made.append(provider)
        add_log(request.node, f"provider stderr ({provider!r})", provider.stderr_tail)
        return provider

    yield make
    for provider in made:
        provider.stop()


@pytest.fixture
def idp(idp_factory):
    """The example OIDC provider with the dev defaults' redirect URIs (Portcullis on
    http://localhost:8080); tests that need other URIs use `idp_factory`."""
    return idp_factory(redirect_uris=["http://localhost:8080/oauth2/callback"],
                       post_logout_redirect_uris=["http://localhost:8080/.portcullis/signed_out"])


@pytest.fixture
def browser_factory(request, tmp_path):
    """`browser_factory(name="alice")` starts a headless Chromium with a fresh profile behind the
    harness (e2e/browser.py, e2e/node/browser.mjs); screenshots are named `<test>-<name>-...`
    under e2e/artifacts/ (E2E_ARTIFACTS). Closed at teardown; the harness's stderr goes into the
    report of a failing test."""
    made = []

    def make(name: str = "browser", **kw):
        b = Browser(f"{request.node.name}-{name}", tmp_path, **kw)
        made.append(b)
        add_log(request.node, f"browser harness stderr ({b.name})", b.stderr_tail)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def resolve_localhost():
    """While the test runs, `localhost` and `*.localhost` resolve to 127.0.0.1 for Python clients
    in this process (requests, http.client), as in browsers and curl (see `idp.localhost_names`)."""
    with localhost_names():
        yield


# --------------------------------------------------------------------------------------------
# the test CRD (widgets.example.com)
# --------------------------------------------------------------------------------------------

WIDGET_CEL_MESSAGE = "a widget larger than 5 must be red"

WIDGET_CRD: dict = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList",
                  "shortNames": ["wd"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10},
                            "color": {"type": "string", "enum": ["red", "blue"]},
                        },
                        "x-kubernetes-validations": [
                            {"rule": "self.size <= 5 || self.color == 'red'", "message": WIDGET_CEL_MESSAGE},
                        ],
                    },
                    "status": {
                        "type": "object",
                        "properties": {"phase": {"type": "string"}, "observed": {"type": "integer"}},
                    },
                },
            }},
        }],
    },
}


def widget(name: str, size: Any = 3, color: str | None = "blue", namespace: str | None = None,
           labels: dict | None = None, **spec_extra) -> dict:
    spec: dict = {}
    if size is not None:
        spec["size"] = size
    if color is not None:
        spec["color"] = color
    spec.update(spec_extra)
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}


def install_widget_crd(server: DevServer) -> None:
    """kubectl apply the CRD and wait until it is Established and served."""
    server.apply_docs(WIDGET_CRD)
    server.kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/widgets.example.com")
    wait_for(lambda: server.kubectl("get", "widgets", check=False).returncode == 0, 30,
             what="`kubectl get widgets` to work after the CRD is established")
