"""The kubectl matrix against `portcullis dev` (DESIGN §5), the parts test_devapi_kubectl.py does not
cover: apply with list edits (strategic merge and server-side), diff, the three patch types, output
formats and server-side tables, describe/events, wait, delete variants, explain, server dry-run,
small verbs (label, annotate, token, raw), and a namespace held in Terminating by a finalizer.

The module name contains `test_devapi_kubectl`, so scripts/test runs it with kubectl 1.32 and 1.35.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
from datetime import datetime, timezone

import pytest
import yaml

from conftest import DevServer, configmap, namespace, to_yaml, wait_for, write_yaml

# ============================================================================================
# helpers
# ============================================================================================


def deployment(name: str, containers: list[dict], labels: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
        },
    }


def env(*pairs: tuple[str, str]) -> list[dict]:
    return [{"name": n, "value": v} for n, v in pairs]


def shape(containers: list[dict]) -> list[tuple]:
    """What a user compares after an apply: container names/images, ports and env, in order.
    (Server-side defaults such as `protocol: TCP` are ignored, so a real cluster passes too.)"""
    return [(c["name"], c.get("image"),
             [p["containerPort"] for p in c.get("ports") or []],
             [(e["name"], e.get("value")) for e in c.get("env") or []])
            for c in containers]


def live_shape(dev: DevServer, name: str) -> list[tuple]:
    return shape(dev.get_json("deployment", name)["spec"]["template"]["spec"]["containers"])


def file_shape(doc: dict) -> list[tuple]:
    return shape(doc["spec"]["template"]["spec"]["containers"])


def table(out: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Parse kubectl's column output into (headers, {first column: {header: cell}})."""
    lines = [l for l in out.splitlines() if l.strip()]
    assert lines, f"no table printed: {out!r}"
    head = lines[0]
    headers = head.split()
    starts = [m.start() for m in re.finditer(r"\S+", head)] + [None]
    rows = {}
    for line in lines[1:]:
        row = {h: line[starts[i]:starts[i + 1]].strip() for i, h in enumerate(headers)}
        rows[row[headers[0]]] = row
    return headers, rows


def jwt_part(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def server_dry_run_says_so(cp: subprocess.CompletedProcess) -> None:
    assert "(server dry run)" in cp.stdout, f"no '(server dry run)' in {cp.stdout!r} / {cp.stderr!r}"


class BackgroundKubectl:
    """A kubectl command (wait, ...) running in the background with -v=6, so the test can tell when
    its watch is open (the request log names `watch=true`) before changing what it waits for."""

    def __init__(self, dev: DevServer, *args: str):
        self.args = args
        self.proc = dev.kubectl_popen(*args, "-v=6")
        self.err: list[str] = []
        self.out = b""
        self._t_err = threading.Thread(target=self._pump_err, daemon=True)
        self._t_err.start()
        self._t_out = threading.Thread(target=self._pump_out, daemon=True)
        self._t_out.start()

    def _pump_err(self):
        for raw in self.proc.stderr:
            self.err.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _pump_out(self):
        self.out = self.proc.stdout.read()

    def wait_watching(self, timeout: float = 60.0):
        def watching():
            if self.proc.poll() is not None:
                raise AssertionError(f"kubectl {' '.join(self.args)} ended early with {self.proc.returncode}: "
                                     f"{self.out!r}\n" + "\n".join(self.err[-30:]))
            return any("watch=true" in l for l in self.err)

        wait_for(watching, timeout, what=f"kubectl {' '.join(self.args)} to open its watch")
        assert self.proc.poll() is None, "the wait ended before the change it waits for"

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"kubectl {' '.join(self.args)} still running after {timeout:.0f}s:\n"
                                 + "\n".join(self.err[-30:]))
        self._t_out.join(timeout=10)
        self._t_err.join(timeout=10)
        return code, self.out.decode("utf-8", "replace"), "\n".join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# A CRD with a status subresource that carries standard conditions (for `kubectl wait`).
GADGET_CRD: dict = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"conditions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["type"],
                        "items": {
                            "type": "object",
                            "required": ["type", "status"],
                            "properties": {
                                "type": {"type": "string"},
                                "status": {"type": "string"},
                                "reason": {"type": "string"},
                                "message": {"type": "string"},
                                "lastTransitionTime": {"type": "string", "format": "date-time"},
                            },
                        },
                    }}},
                },
            }},
        }],
    },
}


def gadget(name: str, size: int = 1) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": {"size": size}}


ROUTE = {
    "apiVersion": "portcullis.dev/v1alpha1",
    "kind": "Route",
    "metadata": {"name": "echo"},
    "spec": {
        "from": "http://echo.localhost:8080",
        "to": [{"url": "http://127.0.0.1:9000"}],
        "policy": {"allow": {"or": [{"serviceAccount": {"is": "default/echo-bot"}}]}},
    },
}


# ============================================================================================
# 1. apply with list edits
# ============================================================================================

APPLY_V1 = [
    {"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}, {"containerPort": 443}],
     "env": env(("EX", "1"), ("WHY", "2"), ("ZED", "3"))},
    {"name": "b", "image": "busybox:1"},
]
# add container c (between a and b), change a's image, drop port 443, reorder env
APPLY_V2 = [
    {"name": "a", "image": "nginx:1.28", "ports": [{"containerPort": 80}],
     "env": env(("ZED", "3"), ("EX", "1"), ("WHY", "2"))},
    {"name": "c", "image": "redis:7"},
    {"name": "b", "image": "busybox:1"},
]


@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_apply_twice_with_list_edits(dev, tmp_path, mode):
    name = f"lists-{mode}"
    extra = ["--server-side"] if mode == "server-side" else []
    verb = "serverside-applied" if extra else None
    f = tmp_path / "dep.yaml"

    v1 = deployment(name, APPLY_V1)
    write_yaml(f, v1)
    out = dev.kubectl("apply", *extra, "-f", f).stdout.strip()
    assert out == f"deployment.apps/{name} {verb or 'created'}", out
    assert live_shape(dev, name) == file_shape(v1)

    v2 = deployment(name, APPLY_V2)
    write_yaml(f, v2)
    out = dev.kubectl("apply", *extra, "-f", f).stdout.strip()
    assert out == f"deployment.apps/{name} {verb or 'configured'}", out
    got = live_shape(dev, name)
    assert got == file_shape(v2), (
        f"after the second {mode} apply the lists differ from the file\n live: {got}\n file: {file_shape(v2)}")
    assert dev.get_json("deployment", name)["metadata"]["generation"] == 2

    # and back: container c removed, port 443 back, env order back
    write_yaml(f, v1)
    dev.kubectl("apply", *extra, "-f", f)
    got = live_shape(dev, name)
    assert got == file_shape(v1), f"after re-applying v1 ({mode})\n live: {got}\n file: {file_shape(v1)}"

    if not extra:
        assert dev.kubectl("apply", "-f", f).stdout.strip() == f"deployment.apps/{name} unchanged"


# ============================================================================================
# 2. diff
# ============================================================================================


def test_diff_changed_and_unchanged_file(dev, tmp_path):
    f = tmp_path / "app.yaml"
    dep = deployment("differ", [{"name": "web", "image": "nginx:1.27"}])
    cm = configmap("differ-cfg", {"mode": "old"})
    write_yaml(f, cm, dep)
    dev.kubectl("apply", "-f", f)
    rv = {k: dev.get_json(k, n)["metadata"]["resourceVersion"] for k, n in
          [("cm", "differ-cfg"), ("deploy", "differ")]}

    cp = dev.kubectl("diff", "-f", f, check=False)
    assert (cp.returncode, cp.stdout) == (0, ""), f"diff of an unchanged file: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"

    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    cm["data"]["mode"] = "new"
    new = configmap("differ-new", {"k": "v"})
    write_yaml(f, cm, dep, new)
    cp = dev.kubectl("diff", "-f", f, check=False)
    assert cp.returncode == 1, f"diff of a changed file: exit {cp.returncode} (want 1)\n{cp.stdout}\n{cp.stderr}"
    # diff changed nothing (it is a dry run)
    assert not dev.exists("cm", "differ-new")
    for k, n in [("cm", "differ-cfg"), ("deploy", "differ")]:
        assert dev.get_json(k, n)["metadata"]["resourceVersion"] == rv[k], f"kubectl diff changed {k}/{n}"
    assert dev.get_json("cm", "differ-cfg")["data"] == {"mode": "old"}

    lines = cp.stdout.splitlines()
    assert any(l.startswith("--- ") for l in lines) and any(l.startswith("+++ ") for l in lines), cp.stdout
    for pat in [r"^-\s+(- )?image: nginx:1\.27$", r"^\+\s+(- )?image: nginx:1\.28$",
                r"^-\s+mode: old$", r"^\+\s+mode: new$", r"^\+\s+name: differ-new$"]:
        assert any(re.match(pat, l) for l in lines), f"no line matching {pat!r} in the diff:\n{cp.stdout}"
    # only the changes: nothing else is marked as removed (generation rises with the template)
    removed = [l for l in lines if l.startswith("-") and not l.startswith("--- ")]
    unexpected = [l for l in removed if not re.match(r"^-\s+((- )?image: nginx:1\.27|mode: old|generation: 1)$", l)]
    assert not unexpected, f"diff shows unrelated removals: {unexpected}\n{cp.stdout}"


def test_diff_of_unchanged_file_is_empty_whoever_created_the_object(dev, tmp_path):
    """An object created by `kubectl create`, by server-side apply or by client-side apply (helm and
    controllers do the first two) diffs clean against the file it came from.

    (Not `apply` then `diff --server-side`: there Kubernetes itself rewrites the last-applied annotation.)"""
    problems = []
    for creator, modes in ((["apply"], [[]]), (["create"], [[], ["--server-side"]]),
                           (["apply", "--server-side"], [[], ["--server-side"]])):
        name = "made-by-" + "-".join(a.strip("-") for a in creator)
        f = write_yaml(tmp_path / f"{name}.yaml", configmap(name, {"k": "v"}),
                       deployment(name, [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]))
        dev.kubectl(*creator, "-f", f)
        for mode in modes:
            cp = dev.kubectl("diff", *mode, "-f", f, check=False)
            if (cp.returncode, cp.stdout) != (0, ""):
                problems.append(f"`kubectl {' '.join(creator)} -f F` then `kubectl {' '.join(['diff', *mode])} -f F`: "
                                f"exit {cp.returncode}\n{cp.stdout}{cp.stderr}")
    assert not problems, "\n\n".join(problems)


# ============================================================================================
# 3. patch: strategic (default), merge, json
# ============================================================================================


def test_patch_strategic_merge_and_json(dev):
    dev.apply_docs(deployment("patchy", [
        {"name": "a", "image": "n:1", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "sidecar:1"},
    ], labels={"keep": "yes"}))

    # strategic (kubectl's default): the list is merged by name, b stays
    cp = dev.kubectl("patch", "deployment", "patchy",
                     "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"n:2"}]}}}}')
    assert cp.stdout.strip() == "deployment.apps/patchy patched"
    assert live_shape(dev, "patchy") == [("a", "n:2", [80], []), ("b", "sidecar:1", [], [])]
    assert dev.get_json("deploy", "patchy")["metadata"]["generation"] == 2

    # strategic with $patch: delete removes one element by its key
    dev.kubectl("patch", "deployment", "patchy", "--type=strategic",
                "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"b","$patch":"delete"}]}}}}')
    assert live_shape(dev, "patchy") == [("a", "n:2", [80], [])]

    # merge: a list is replaced as a whole, maps are merged, null deletes
    cp = dev.kubectl("patch", "deployment", "patchy", "--type=merge", "-p", json.dumps({
        "metadata": {"labels": {"added": "1", "keep": None}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "n:3"}, {"name": "c", "image": "other:1"}]}}},
    }))
    assert cp.stdout.strip() == "deployment.apps/patchy patched"
    d = dev.get_json("deploy", "patchy")
    assert d["metadata"]["labels"] == {"added": "1"}
    assert d["spec"]["replicas"] == 3
    assert shape(d["spec"]["template"]["spec"]["containers"]) == [("a", "n:3", [], []), ("c", "other:1", [], [])]

    # json: test + add + replace + remove, in order
    cp = dev.kubectl("patch", "deployment", "patchy", "--type=json", "-p", json.dumps([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/env", "value": [{"name": "K", "value": "v"}]},
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "other:2"},
        {"op": "remove", "path": "/metadata/labels/added"},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
    ]))
    assert cp.stdout.strip() == "deployment.apps/patchy patched"
    d = dev.get_json("deploy", "patchy")
    assert d["metadata"]["labels"] == {"tier": "front"}
    assert d["spec"]["replicas"] == 4
    assert shape(d["spec"]["template"]["spec"]["containers"]) == [("a", "n:3", [], [("K", "v")]),
                                                                   ("c", "other:2", [], [])]
    rv = d["metadata"]["resourceVersion"]

    # a failing test op refuses the whole patch
    cp = dev.kubectl_fails("patch", "deployment", "patchy", "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/replicas", "value": 9},
        {"op": "test", "path": "/spec/replicas", "value": 7},
    ]))
    assert "invalid" in cp.stderr.lower() or "test" in cp.stderr.lower(), cp.stderr
    d = dev.get_json("deploy", "patchy")
    assert d["spec"]["replicas"] == 4 and d["metadata"]["resourceVersion"] == rv, "a refused patch changed the object"

    # removing a missing path is refused too
    cp = dev.kubectl_fails("patch", "deployment", "patchy", "--type=json",
                           "-p", '[{"op":"remove","path":"/metadata/labels/absent"}]')
    assert dev.get_json("deploy", "patchy")["metadata"]["resourceVersion"] == rv


# ============================================================================================
# 4. get output formats and server-side tables
# ============================================================================================


def test_get_output_formats(dev):
    dev.apply_docs(configmap("fmt-a", {"k": "one"}), configmap("fmt-b", {"k": "two", "other": "x"}))

    y = yaml.safe_load(dev.kubectl("get", "configmap", "fmt-a", "-o", "yaml").stdout)
    assert (y["kind"], y["apiVersion"], y["metadata"]["name"], y["data"]) == ("ConfigMap", "v1", "fmt-a", {"k": "one"})
    ylist = yaml.safe_load(dev.kubectl("get", "configmaps", "-o", "yaml").stdout)
    assert ylist["kind"] == "List" and {"fmt-a", "fmt-b"} <= {i["metadata"]["name"] for i in ylist["items"]}

    j = json.loads(dev.kubectl("get", "configmap", "fmt-b", "-o", "json").stdout)
    assert j["data"] == {"k": "two", "other": "x"} and j["metadata"]["namespace"] == "default"

    names = dev.kubectl("get", "configmaps", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert {"fmt-a", "fmt-b"} <= set(names), names

    out = dev.kubectl("get", "configmaps", "fmt-a", "fmt-b", "-o", "custom-columns=NAME:.metadata.name,V:.data.k").stdout
    assert [l.split() for l in out.splitlines()] == [["NAME", "V"], ["fmt-a", "one"], ["fmt-b", "two"]], out
    out = dev.kubectl("get", "configmap", "fmt-a", "-o", "custom-columns=NAME:.metadata.name,O:.data.other").stdout
    assert [l.split() for l in out.splitlines()] == [["NAME", "O"], ["fmt-a", "<none>"]], out

    assert dev.kubectl("get", "configmap", "fmt-a", "-o", "name").stdout == "configmap/fmt-a\n"
    assert dev.kubectl("get", "deploy", "-o", "name").stdout == ""


def test_server_side_table_columns(dev):
    dev.apply_docs(ROUTE)
    headers, rows = table(dev.kubectl("get", "routes").stdout)
    assert headers == ["NAME", "FROM", "TO", "READY", "AGE"], headers
    assert rows["echo"]["FROM"] == "http://echo.localhost:8080", rows
    assert "http://127.0.0.1:9000" in rows["echo"]["TO"], rows
    assert re.fullmatch(r"\d+[smhd].*", rows["echo"]["AGE"]), rows

    dev.apply_docs(configmap("three", {"a": "1", "b": "2", "c": "3"}), configmap("none"))
    headers, rows = table(dev.kubectl("get", "configmaps").stdout)
    assert headers == ["NAME", "DATA", "AGE"], headers
    assert rows["three"]["DATA"] == "3" and rows["none"]["DATA"] == "0", rows

    dev.apply_docs(deployment("wide", [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluent:2"}]))
    headers, rows = table(dev.kubectl("get", "deploy", "-o", "wide").stdout)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"], headers
    row = rows["wide"]
    assert (row["CONTAINERS"], row["IMAGES"], row["SELECTOR"]) == ("web,log", "nginx:1.27,fluent:2", "app=wide"), row

    dev.apply_docs(namespace("tabled"))
    headers, rows = table(dev.kubectl("get", "ns").stdout)
    assert headers == ["NAME", "STATUS", "AGE"], headers
    assert rows["default"]["STATUS"] == "Active" and rows["tabled"]["STATUS"] == "Active", rows


# ============================================================================================
# 5. describe shows events
# ============================================================================================


def test_describe_and_events_show_an_event(dev, tmp_path):
    dev.apply_docs(configmap("watched-cm", {"k": "v"}))
    uid = dev.get_json("cm", "watched-cm")["metadata"]["uid"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ev = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "watched-cm.e2e1", "namespace": "default"},
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "watched-cm", "namespace": "default",
                      "uid": uid},
        "reportingController": "e2e.portcullis.dev/tester",
        "reportingInstance": "tester-1",
        "action": "Inspecting",
        "reason": "E2eInspected",
        "note": "the e2e suite looked at this config map",
        "type": "Normal",
        "eventTime": now,
    }
    f = write_yaml(tmp_path / "event.yaml", ev)
    assert dev.kubectl("create", "-f", f).stdout.strip() == "event.events.k8s.io/watched-cm.e2e1 created"

    out = dev.kubectl("describe", "configmap", "watched-cm").stdout
    assert "Events:" in out, out
    events = out[out.index("Events:"):]
    assert "<none>" not in events.splitlines()[0], out
    row = next((l for l in events.splitlines() if "E2eInspected" in l), None)
    assert row, f"the event is not under Events:\n{out}"
    assert "Normal" in row and "the e2e suite looked at this config map" in row, row
    assert "e2e.portcullis.dev/tester" in row, row  # From

    out = dev.kubectl("events", "--for", "configmap/watched-cm").stdout
    row = next((l for l in out.splitlines() if "E2eInspected" in l), None)
    assert row and "the e2e suite looked at this config map" in row, out
    assert re.search(r"configmap/watched-cm", row, re.I), row

    out = dev.kubectl("get", "events").stdout
    assert any("E2eInspected" in l and "the e2e suite looked at this config map" in l for l in out.splitlines()), out
    # the same event, seen through core/v1
    core = json.loads(dev.kubectl("get", "--raw", "/api/v1/namespaces/default/events/watched-cm.e2e1").stdout)
    assert core["involvedObject"]["name"] == "watched-cm" and core["reason"] == "E2eInspected", core
    assert core["message"] == "the e2e suite looked at this config map", core

    # another object's describe does not show it
    dev.apply_docs(configmap("quiet-cm", {"k": "v"}))
    assert "E2eInspected" not in dev.kubectl("describe", "configmap", "quiet-cm").stdout


# ============================================================================================
# 6. wait
# ============================================================================================


@pytest.fixture
def gdev(dev) -> DevServer:
    dev.apply_docs(GADGET_CRD)
    cp = dev.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/gadgets.example.com")
    assert cp.stdout.strip() == "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com condition met"
    wait_for(lambda: dev.kubectl("get", "gadgets", check=False).returncode == 0, 30, what="gadgets served")
    return dev


def test_wait_for_established_crd(gdev):
    crd = gdev.get_json("crd", "gadgets.example.com")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}.get("Established") == "True"
    # a condition that is not there times out with exit 1
    cp = gdev.kubectl("wait", "--for=condition=Bogus", "--timeout=2s", "crd/gadgets.example.com", check=False)
    assert cp.returncode == 1 and "timed out" in cp.stderr, cp


def test_wait_for_condition_set_later_through_status(gdev):
    gdev.apply_docs(gadget("g1"))
    w = BackgroundKubectl(gdev, "wait", "--for=condition=Ready", "--timeout=90s", "gadget/g1")
    try:
        w.wait_watching()
        # a different condition does not end the wait
        gdev.kubectl("patch", "gadget", "g1", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Starting", "message": "",
                                        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}))
        gdev.kubectl("patch", "gadget", "g1", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Done", "message": "ok",
                                        "lastTransitionTime": "2025-01-01T00:00:01Z"}]}}))
        code, out, err = w.finish()
    finally:
        w.kill()
    assert code == 0, f"kubectl wait --for=condition=Ready exited {code}\n{out}\n{err[-3000:]}"
    assert out.strip() == "gadget.example.com/g1 condition met", out


def test_wait_for_delete(gdev):
    gdev.apply_docs(gadget("doomed"))
    w = BackgroundKubectl(gdev, "wait", "--for=delete", "--timeout=90s", "gadget/doomed")
    try:
        w.wait_watching()
        gdev.kubectl("delete", "gadget", "doomed", "--wait=false")
        code, out, err = w.finish()
    finally:
        w.kill()
    assert code == 0, f"kubectl wait --for=delete exited {code}\n{out}\n{err[-3000:]}"
    assert "gadget.example.com/doomed" in out, out
    assert not gdev.exists("gadget", "doomed")
    # waiting for something already gone returns at once
    cp = gdev.kubectl("wait", "--for=delete", "--timeout=10s", "gadget/doomed", check=False)
    assert cp.returncode == 0, cp


def test_wait_for_jsonpath(dev):
    dev.apply_docs(configmap("jp", {"k": "before"}))
    w = BackgroundKubectl(dev, "wait", "--for=jsonpath={.data.k}=v", "--timeout=90s", "configmap/jp")
    try:
        w.wait_watching()
        dev.kubectl("patch", "configmap", "jp", "--type=merge", "-p", '{"data":{"k":"v"}}')
        code, out, err = w.finish()
    finally:
        w.kill()
    assert code == 0, f"kubectl wait --for=jsonpath exited {code}\n{out}\n{err[-3000:]}"
    assert out.strip() == "configmap/jp condition met", out
    cp = dev.kubectl("wait", "--for=jsonpath={.data.k}=other", "--timeout=2s", "configmap/jp", check=False)
    assert cp.returncode == 1 and "timed out" in cp.stderr, cp


# ============================================================================================
# 7. delete variants
# ============================================================================================


def owner_and_dependent(dev: DevServer, owner: str, dependent: str, finalizers: list[str] | None = None,
                        ns: str = "default"):
    dev.apply_docs(configmap(owner, {"role": "owner"}, namespace=ns))
    uid = dev.get_json("cm", owner, "-n", ns)["metadata"]["uid"]
    dep = configmap(dependent, {"role": "dependent"}, namespace=ns)
    dep["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid,
                                           "blockOwnerDeletion": True}]
    if finalizers:
        dep["metadata"]["finalizers"] = finalizers
    dev.apply_docs(dep)
    return uid


def test_delete_cascade_foreground(dev):
    owner_and_dependent(dev, "fg-owner", "fg-dep")
    cp = dev.kubectl("delete", "configmap", "fg-owner", "--cascade=foreground")
    assert cp.stdout.startswith('configmap "fg-owner" deleted'), cp.stdout
    wait_for(lambda: not dev.exists("cm", "fg-owner"), 30, what="fg-owner gone")
    wait_for(lambda: not dev.exists("cm", "fg-dep"), 30, what="the dependent deleted with its owner")

    # With a dependent that cannot go yet, the owner waits for it (foregroundDeletion).
    owner_and_dependent(dev, "fg-owner2", "fg-dep2", finalizers=["e2e.portcullis.dev/hold"])
    dev.kubectl("delete", "configmap", "fg-owner2", "--cascade=foreground", "--wait=false")

    def owner_waiting():
        o = dev.get_json("cm", "fg-owner2")["metadata"]
        d = dev.get_json("cm", "fg-dep2")["metadata"]
        return ("deletionTimestamp" in o and "foregroundDeletion" in o.get("finalizers", [])
                and "deletionTimestamp" in d) and (o, d)

    wait_for(owner_waiting, 30, what="owner in foreground deletion and its dependent being deleted")
    dev.kubectl("patch", "configmap", "fg-dep2", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    wait_for(lambda: not dev.exists("cm", "fg-dep2"), 30, what="the dependent gone once its finalizer is removed")
    wait_for(lambda: not dev.exists("cm", "fg-owner2"), 30, what="the owner gone after its dependent")


def test_delete_cascade_orphan(dev):
    owner_and_dependent(dev, "or-owner", "or-dep")
    cp = dev.kubectl("delete", "configmap", "or-owner", "--cascade=orphan")
    assert cp.stdout.startswith('configmap "or-owner" deleted'), cp.stdout
    wait_for(lambda: not dev.exists("cm", "or-owner"), 30, what="or-owner gone")
    dep = wait_for(lambda: (m := dev.get_json("cm", "or-dep")) and not m["metadata"].get("ownerReferences") and m,
                   30, what="the orphaned dependent without its ownerReference")
    assert dep["data"] == {"role": "dependent"}
    assert "deletionTimestamp" not in dep["metadata"], dep["metadata"]

    # background (the default) deletes the dependent after the owner
    owner_and_dependent(dev, "bg-owner", "bg-dep")
    dev.kubectl("delete", "configmap", "bg-owner")
    wait_for(lambda: not dev.exists("cm", "bg-dep"), 30, what="bg-dep collected after its owner")
    assert dev.exists("cm", "or-dep"), "the orphan was collected later"


def test_delete_by_label_and_all(dev):
    dev.apply_docs(configmap("l-a", labels={"app": "x"}), configmap("l-b", labels={"app": "x", "t": "1"}),
                   configmap("l-c", labels={"app": "y"}), configmap("l-d"))
    cp = dev.kubectl("delete", "configmap", "-l", "app=x")
    deleted = sorted(re.findall(r'configmap "([^"]+)" deleted', cp.stdout))
    assert deleted == ["l-a", "l-b"], cp.stdout
    assert [dev.exists("cm", n) for n in ("l-a", "l-b", "l-c", "l-d")] == [False, False, True, True]

    dev.apply_docs(namespace("sweep"), namespace("bystander"),
                   *(configmap(f"s-{i}", {"i": str(i)}, namespace="sweep") for i in range(3)),
                   configmap("s-0", namespace="bystander"))
    cp = dev.kubectl("delete", "configmaps", "--all", "-n", "sweep")
    deleted = set(re.findall(r'configmap "([^"]+)" deleted', cp.stdout))
    assert {"s-0", "s-1", "s-2"} <= deleted, cp.stdout
    left = [n for n in dev.kubectl("get", "cm", "-n", "sweep", "-o", "name").stdout.split()
            if n.startswith("configmap/s-")]
    assert left == [], left
    assert dev.exists("cm", "s-0", "-n", "bystander")
    assert dev.exists("cm", "l-c") and dev.exists("cm", "l-d")


# ============================================================================================
# 8. explain
# ============================================================================================


def test_explain(dev):
    out = dev.kubectl("explain", "route.spec.to").stdout
    assert re.search(r"^KIND:\s+Route$", out, re.M) and re.search(r"^VERSION:\s+v1alpha1$", out, re.M), out
    assert re.search(r"^FIELD:\s+to\s+<\[\]Object>", out, re.M), out
    assert "DESCRIPTION:" in out and "FIELDS:" in out, out
    for field in ("service", "url", "weight"):
        assert re.search(rf"^\s+{field}\s+<", out, re.M), f"{field} missing from explain route.spec.to:\n{out}"

    out = dev.kubectl("explain", "deployment.spec.replicas").stdout
    assert re.search(r"^KIND:\s+Deployment$", out, re.M) and re.search(r"^GROUP:\s+apps$", out, re.M), out
    assert re.search(r"^FIELD:\s+replicas\s+<integer>", out, re.M), out
    assert "desired pods" in out, out

    out = dev.kubectl("explain", "configmap", "--recursive").stdout
    assert re.search(r"^KIND:\s+ConfigMap$", out, re.M), out
    for field, typ in (("data", "map[string]string"), ("binaryData", "map[string]string"), ("immutable", "boolean"),
                       ("metadata", "ObjectMeta")):
        assert re.search(rf"^\s+{field}\s+<{re.escape(typ)}>", out, re.M), f"{field} <{typ}> missing:\n{out}"
    assert re.search(r"^\s{4,}labels\s+<map\[string\]string>", out, re.M), out  # nested under metadata

    cp = dev.kubectl_fails("explain", "configmap.nosuchfield")
    assert "nosuchfield" in cp.stderr, cp.stderr


# ============================================================================================
# 9. --dry-run=server
# ============================================================================================


def test_dry_run_server_changes_nothing(dev, tmp_path):
    dev.apply_docs(configmap("live", {"k": "v"}))
    dev.kubectl("apply", "--server-side", "-f", "-", input=to_yaml(configmap("live-ssa", {"k": "v"})))
    before = {n: dev.get_json("cm", n) for n in ("live", "live-ssa")}

    def unchanged():
        for n, obj in before.items():
            now = dev.get_json("cm", n)
            assert now["data"] == obj["data"], f"{n} data changed by a dry run: {now['data']}"
            assert now["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"], f"{n} was written"

    # create (generator and file)
    cp = dev.kubectl("create", "configmap", "ghost", "--from-literal=a=b", "--dry-run=server")
    server_dry_run_says_so(cp)
    assert cp.stdout.strip() == "configmap/ghost created (server dry run)"
    f = write_yaml(tmp_path / "ghost2.yaml", configmap("ghost2", {"a": "b"}))
    cp = dev.kubectl("create", "-f", f, "--dry-run=server")
    assert cp.stdout.strip() == "configmap/ghost2 created (server dry run)"
    # the server did the work: defaults like uid and creationTimestamp come back
    obj = json.loads(dev.kubectl("create", "-f", f, "--dry-run=server", "-o", "json").stdout)
    assert obj["metadata"].get("uid") and obj["metadata"].get("creationTimestamp"), obj["metadata"]
    assert not dev.exists("cm", "ghost") and not dev.exists("cm", "ghost2")

    # apply, client side: a change to an existing object and a new one
    f = write_yaml(tmp_path / "apply.yaml", configmap("live", {"k": "changed"}), configmap("ghost3", {"a": "b"}))
    cp = dev.kubectl("apply", "--dry-run=server", "-f", f)
    assert cp.stdout.splitlines() == ["configmap/live configured (server dry run)",
                                      "configmap/ghost3 created (server dry run)"], cp.stdout
    assert not dev.exists("cm", "ghost3")
    unchanged()

    # apply, server side
    f = write_yaml(tmp_path / "ssa.yaml", configmap("live-ssa", {"k": "changed"}), configmap("ghost4", {"a": "b"}))
    cp = dev.kubectl("apply", "--server-side", "--dry-run=server", "-f", f)
    assert cp.stdout.splitlines() == ["configmap/live-ssa serverside-applied (server dry run)",
                                      "configmap/ghost4 serverside-applied (server dry run)"], cp.stdout
    out = json.loads(dev.kubectl("apply", "--server-side", "--dry-run=server", "-f", f, "-o", "json").stdout)
    items = out["items"] if out.get("kind") == "List" else [out]
    assert {i["metadata"]["name"]: i["data"] for i in items} == {"live-ssa": {"k": "changed"}, "ghost4": {"a": "b"}}
    assert not dev.exists("cm", "ghost4")
    unchanged()

    # patch (kubectl prints plain "patched" here; the answer shows the server applied the patch)
    cp = dev.kubectl("patch", "configmap", "live", "-p", '{"data":{"k":"patched"}}', "--dry-run=server",
                     "-o", "jsonpath={.data.k}")
    assert cp.stdout == "patched", cp
    cp = dev.kubectl("patch", "configmap", "live", "--type=merge", "-p", '{"data":{"k":"patched"}}', "--dry-run=server")
    assert cp.stdout.startswith("configmap/live patched"), cp.stdout
    unchanged()

    # delete
    cp = dev.kubectl("delete", "configmap", "live", "--dry-run=server")
    assert re.fullmatch(r'configmap "live" deleted( from default namespace)? \(server dry run\)', cp.stdout.strip()), cp.stdout
    cp = dev.kubectl("delete", "configmap", "--all", "--dry-run=server")
    server_dry_run_says_so(cp)
    unchanged()
    assert dev.exists("cm", "live") and dev.exists("cm", "live-ssa")


# ============================================================================================
# 10. verbs that need no controllers
# ============================================================================================


def test_api_versions_and_cluster_info(dev):
    versions = dev.kubectl("api-versions").stdout.split()
    for gv in ("v1", "apps/v1", "portcullis.dev/v1alpha1", "apiextensions.k8s.io/v1", "events.k8s.io/v1"):
        assert gv in versions, f"{gv} missing from kubectl api-versions: {versions}"
    assert versions == sorted(versions), versions

    cp = dev.kubectl("cluster-info")
    text = re.sub(r"\x1b\[[0-9;]*m", "", cp.stdout)
    assert re.search(rf"control plane is running at {re.escape(dev.api_url)}\s*$", text, re.M), text


def test_label_and_annotate(dev):
    dev.apply_docs(configmap("tagged", {"k": "v"}, labels={"app": "x"}))

    def meta():
        return dev.get_json("cm", "tagged")["metadata"]

    assert dev.kubectl("label", "configmap", "tagged", "tier=front").stdout.strip() == "configmap/tagged labeled"
    assert meta()["labels"] == {"app": "x", "tier": "front"}
    cp = dev.kubectl_fails("label", "configmap", "tagged", "tier=back")
    assert "--overwrite" in cp.stderr, cp.stderr
    assert meta()["labels"]["tier"] == "front"
    dev.kubectl("label", "configmap", "tagged", "tier=back", "--overwrite")
    assert meta()["labels"] == {"app": "x", "tier": "back"}
    assert dev.kubectl("label", "configmap", "tagged", "tier-").stdout.strip() == "configmap/tagged unlabeled"
    assert meta()["labels"] == {"app": "x"}
    assert dev.kubectl("get", "cm", "-l", "tier", "-o", "name").stdout == ""

    assert dev.kubectl("annotate", "configmap", "tagged", "note=hello").stdout.strip() == "configmap/tagged annotated"
    assert meta()["annotations"]["note"] == "hello"
    cp = dev.kubectl_fails("annotate", "configmap", "tagged", "note=bye")
    assert "--overwrite" in cp.stderr, cp.stderr
    dev.kubectl("annotate", "configmap", "tagged", "note=bye", "--overwrite")
    assert meta()["annotations"]["note"] == "bye"
    dev.kubectl("annotate", "configmap", "tagged", "note-")
    assert "note" not in (meta().get("annotations") or {})
    assert dev.get_json("cm", "tagged")["data"] == {"k": "v"}

    # several objects at once, by selector
    dev.apply_docs(configmap("tagged2", labels={"app": "x"}), configmap("untagged", labels={"app": "y"}))
    dev.kubectl("label", "configmap", "-l", "app=x", "batch=1")
    assert dev.kubectl("get", "cm", "-l", "batch=1", "-o", "name").stdout.split() == [
        "configmap/tagged", "configmap/tagged2"]


def test_create_namespace(dev):
    assert dev.kubectl("create", "namespace", "made-here").stdout.strip() == "namespace/made-here created"
    ns = dev.get_json("ns", "made-here")
    assert ns["status"]["phase"] == "Active", ns
    cp = dev.kubectl_fails("create", "namespace", "made-here")
    assert "AlreadyExists" in cp.stderr, cp.stderr
    dev.kubectl("create", "configmap", "inside", "-n", "made-here", "--from-literal=a=b")
    assert dev.get_json("cm", "inside", "-n", "made-here")["data"] == {"a": "b"}


def test_create_token_and_raw_endpoints(dev):
    dev.kubectl("create", "serviceaccount", "robot")
    sa_uid = dev.get_json("sa", "robot")["metadata"]["uid"]

    jwks = json.loads(dev.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
    assert jwks.get("keys"), jwks
    kids = {k.get("kid"): k for k in jwks["keys"]}
    for k in jwks["keys"]:
        assert k.get("kty") and k.get("kid") and "d" not in k, f"not a public JWK: {k}"

    def token(*extra):
        tok = dev.kubectl("create", "token", "robot", *extra).stdout.strip()
        parts = tok.split(".")
        assert len(parts) == 3 and all(parts), f"not a JWT: {tok!r}"
        head, claims = jwt_part(parts[0]), jwt_part(parts[1])
        assert head["kid"] in kids, f"token kid {head['kid']} not in /openid/v1/jwks {list(kids)}"
        assert head["alg"] == kids[head["kid"]].get("alg", head["alg"]) and head["alg"] != "none", head
        assert claims["sub"] == "system:serviceaccount:default:robot", claims
        assert claims["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": sa_uid}, claims
        return claims

    plain = token()
    assert plain["exp"] > plain["iat"], plain
    c = token("--audience", "portcullis", "--duration", "15m")
    aud = c["aud"] if isinstance(c["aud"], list) else [c["aud"]]
    assert aud == ["portcullis"], c
    assert c["exp"] - c["iat"] == 900, c

    cp = dev.kubectl_fails("create", "token", "nobody")
    assert "NotFound" in cp.stderr or "not found" in cp.stderr, cp.stderr

    ver = json.loads(dev.kubectl("get", "--raw", "/version").stdout)
    assert re.match(r"^v\d+\.\d+\.\d+", ver["gitVersion"]) and ver["major"] == "1", ver
    disc = json.loads(dev.kubectl("get", "--raw", "/.well-known/openid-configuration").stdout)
    assert disc["jwks_uri"].endswith("/openid/v1/jwks") and disc["issuer"] == plain["iss"], disc


# ============================================================================================
# 11. a namespace held in Terminating by a finalizer
# ============================================================================================


def test_namespace_deletion_waits_for_a_finalizer(dev):
    dev.apply_docs(namespace("held"))
    pinned = configmap("pinned", {"k": "v"}, namespace="held")
    pinned["metadata"]["finalizers"] = ["e2e.portcullis.dev/hold"]
    dev.apply_docs(pinned, configmap("loose", namespace="held"))

    cp = dev.kubectl("delete", "namespace", "held", "--wait=false")
    assert cp.stdout.startswith('namespace "held" deleted'), cp.stdout
    headers, rows = table(dev.kubectl("get", "ns", "held").stdout)
    assert rows["held"]["STATUS"] == "Terminating", rows
    wait_for(lambda: not dev.exists("cm", "loose", "-n", "held"), 30, what="the unfinalized object deleted")
    held = dev.get_json("cm", "pinned", "-n", "held")
    assert "deletionTimestamp" in held["metadata"], held["metadata"]

    refused = dev.kubectl_fails("create", "configmap", "latecomer", "-n", "held", "--from-literal=a=b")
    assert "Forbidden" in refused.stderr or "forbidden" in refused.stderr, refused.stderr
    assert "being terminated" in refused.stderr, refused.stderr
    refused_apply = dev.kubectl_fails("apply", "-f", "-", input=to_yaml(configmap("latecomer2", namespace="held")))
    assert "forbidden" in refused_apply.stderr.lower(), refused_apply.stderr
    assert not dev.exists("cm", "latecomer", "-n", "held")
    assert dev.get_json("ns", "held")["status"]["phase"] == "Terminating"

    dev.kubectl("patch", "configmap", "pinned", "-n", "held", "--type=json",
                "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    wait_for(lambda: not dev.exists("namespace", "held"), 60, what="namespace held gone once its finalizer is removed")
    # the name can be used again
    dev.kubectl("create", "namespace", "held")
    assert dev.kubectl("get", "cm", "-n", "held", "-o", "name").stdout.split().count("configmap/pinned") == 0

    # like Kubernetes, the refusal names the object that was refused
    assert 'configmaps "latecomer" is forbidden' in refused.stderr, refused.stderr


# ============================================================================================
# extra: built-in kinds are type-checked
# ============================================================================================


def test_wrongly_typed_builtin_fields_are_refused(dev):
    """A YAML slip (`k: 1`, or an env var named `Y`, which YAML 1.1 reads as true) is refused by a real
    API server because the built-in types do not decode; dev must not store it."""
    cp = dev.kubectl_fails("apply", "-f", "-",
                           input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typed}\ndata: {k: 1}\n")
    assert "data" in cp.stderr, cp.stderr
    assert not dev.exists("cm", "typed")
    dep = deployment("typed", [{"name": "a", "image": "x", "env": [{"name": True, "value": "2"}]}])
    cp = dev.kubectl_fails("create", "-f", "-", input=json.dumps(dep))
    assert "name" in cp.stderr, cp.stderr
    assert not dev.exists("deploy", "typed")
