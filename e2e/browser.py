"""Python side of the browser harness `e2e/node/browser.mjs` (headless Debian Chromium through
playwright-core). A `Browser` is one Chromium with one fresh profile, kept running between calls
(`browser.mjs --serve`), so a test can look at each page before the next step:

    b = browser_factory("alice")                  # conftest fixture; closed at teardown
    page = b.run({"goto": url, "screenshot": "start"}, {"login": "alice"})
    page.url, page.status, page.text, page.headers, page.cookie("_portcullis", "app.localhost")

Steps are browser.mjs's (see the header of that file). `run` raises AssertionError (with the
harness's stderr and the screenshots taken) when a step fails, unless `check=False`.
Screenshots go to `$E2E_ARTIFACTS`, default `e2e/artifacts/`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
BROWSER_MJS = E2E_DIR / "node" / "browser.mjs"
ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS") or E2E_DIR / "artifacts").resolve()
START_TIMEOUT = 60.0
RUN_TIMEOUT = 90.0


def _pdeathsig():  # in the child: die with the test process rather than leak a browser
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:  # noqa: BLE001
        pass


class Page:
    """What one `Browser.run` reported (see browser.mjs): the page the browser ended on."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.ok: bool = raw.get("ok", False)
        self.error: str | None = raw.get("error")
        self.url: str = raw.get("url", "")
        self.status: int | None = raw.get("status")
        self.headers: dict[str, str] = raw.get("headers") or {}
        self.title: str = raw.get("title", "")
        self.text: str = raw.get("text", "")
        self.body: str | None = raw.get("body")
        self.cookies: list[dict] = raw.get("cookies") or []
        self.navigations: list[dict] = raw.get("navigations") or []
        self.steps: list[dict] = raw.get("steps") or []
        self.screenshots: list[str] = raw.get("screenshots") or []
        self.navigation_error: dict | None = raw.get("navigationError")

    def __repr__(self):
        return f"<Page {self.status} {self.url} {self.title!r}>"

    def json(self) -> Any:
        assert self.body is not None, f"no response body at {self.url} (HTTP {self.status})"
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"not JSON at {self.url} (HTTP {self.status}): {self.body[:500]!r}")

    def cookie(self, name: str, host: str) -> dict | None:
        """The cookie `name` the browser would send to `host` (host-only or domain cookies)."""
        for c in self.cookies:
            domain = c["domain"].lower()
            if c["name"] != name:
                continue
            if domain == host or (domain.startswith(".") and (host == domain[1:] or host.endswith(domain))):
                return c
        return None

    def step(self, i: int) -> dict:
        return self.steps[i]

    def hops(self) -> list[tuple[int | None, str]]:
        """(status, url) of every main-frame response of the run, redirects included."""
        return [(n.get("status"), n["url"]) for n in self.navigations]

    def describe(self) -> str:
        hops = "\n".join(f"  {s} {u}" + (f" -> {n.get('location')}" if n.get("location") else "")
                         + (f" ({n['error']})" if n.get("error") else "")
                         for n, (s, u) in zip(self.navigations, self.hops()))
        return (f"ended at {self.url} (HTTP {self.status}, title {self.title!r})\n"
                f"navigations:\n{hops or '  (none)'}\ntext: {self.text[:600]!r}\n"
                f"screenshots: {self.screenshots}")


class Browser:
    """One Chromium (fresh profile) behind `node browser.mjs --serve`."""

    def __init__(self, name: str, work_dir: Path, *, auto_screenshot: bool = False,
                 ignore_https_errors: bool = False):
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = work_dir / f"browser-{self.name}.stderr.log"
        opts = {"name": self.name, "autoScreenshot": auto_screenshot, "ignoreHTTPSErrors": ignore_https_errors}
        env = dict(os.environ, E2E_ARTIFACTS=str(ARTIFACTS), PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(["node", str(BROWSER_MJS), "--serve", json.dumps(opts)],
                                         cwd=E2E_DIR, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, preexec_fn=_pdeathsig)
        self._buf = b""
        ready = self._read(START_TIMEOUT)
        if not ready.get("ready"):
            self.close()
            raise AssertionError(f"browser harness did not start: {ready}\n{self.stderr_tail()}")
        self.version = ready.get("version")

    def stderr_tail(self, lines: int = 60) -> str:
        if not self.stderr_path.exists():
            return ""
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def _read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"browser harness gave no answer within {timeout:.0f}s\n{self.stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise AssertionError(f"browser harness exited ({self.proc.poll()})\n{self.stderr_tail()}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def run(self, *steps: dict, check: bool = True, timeout: float = RUN_TIMEOUT) -> Page:
        """Run `steps` in this browser; the page it ended on."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"steps": list(steps)}) + "\n").encode())
        self.proc.stdin.flush()
        page = Page(self._read(timeout))
        if check and not page.ok:
            raise AssertionError(f"browser {self.name}: {page.error}\n{page.describe()}\n"
                                 f"--- harness stderr ---\n{self.stderr_tail()}")
        return page

    def goto(self, url: str, screenshot: str | None = None, **kw) -> Page:
        step: dict = {"goto": url}
        if screenshot:
            step["screenshot"] = screenshot
        return self.run(step, **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"close": true}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except Exception:  # noqa: BLE001 - fall through to a kill
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
