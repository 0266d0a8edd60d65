"""The embedded dev API as kubectl 1.32 sees it (DESIGN §5): discovery, CRUD, selectors, CRDs with
schema/CEL validation, subresources, watch, and how it answers bad requests."""

from __future__ import annotations

import base64
import json
import queue
import re
import threading
import time
import uuid
from datetime import datetime
from urllib.parse import quote

import pytest
import yaml

from conftest import (
    WIDGET_CEL_MESSAGE,
    WIDGET_CRD,
    DevServer,
    configmap,
    install_widget_crd,
    namespace,
    wait_for,
    widget,
    write_yaml,
)

SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")


def api_resources(dev: DevServer, *extra: str) -> dict[tuple[str, str], dict]:
    """`kubectl api-resources` parsed into {(name, apiVersion): row}."""
    out = dev.kubectl("api-resources", *extra).stdout
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        return {}
    cols = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    starts = [lines[0].index(c) for c in cols] + [None]
    rows = {}
    for line in lines[1:]:
        row = {c: line[starts[i]:starts[i + 1]].strip() for i, c in enumerate(cols)}
        rows[(row["NAME"], row["APIVERSION"])] = row
    return rows


def rfc3339(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")


# ============================================================================================
# 1. kubectl basics
# ============================================================================================


def test_startup_prints_listeners_and_writes_kubeconfig(dev):
    out = "\n".join(dev.stdout_lines)
    assert re.search(r"^portcullis dev: kubernetes api https://127\.0\.0\.1:\d+ \(embedded\)$", out, re.M), out
    assert re.search(r"^portcullis dev: admin http://127\.0\.0\.1:\d+ ", out, re.M), out
    assert dev.kubeconfig == dev.data_dir / "kubeconfig"
    assert dev.ca_path == dev.data_dir / "ca.crt", out
    # the kubeconfig points at the printed API and trusts the printed CA; it holds a secret: 0600
    kc = dev.kubeconfig_doc()
    cluster = kc["clusters"][0]["cluster"]
    assert cluster["server"] == dev.api_url
    assert base64.b64decode(cluster["certificate-authority-data"]).decode().strip() == dev.ca_path.read_text().strip()
    assert (dev.kubeconfig.stat().st_mode & 0o077) == 0, oct(dev.kubeconfig.stat().st_mode)
    assert dev.admin_get("/healthz")[0] == 200
    assert dev.admin_get("/readyz")[0] == 200
    # kubectl works with nothing but that file (and it verifies TLS against the CA)
    assert "namespace/default" in dev.kubectl("get", "ns", "-o", "name").stdout.split()


def test_api_refuses_a_non_loopback_address(dev_factory, tmp_path):
    s = dev_factory(api_addr="0.0.0.0:0", name="public")
    s.spawn()
    code = s.wait_exit(timeout=60)
    assert code != 0, f"`portcullis dev --api-addr 0.0.0.0:0` started (exit {code})"
    assert "loopback" in s.stderr_text().lower(), s.stderr_text()


def test_kubectl_version_reports_a_semver_server_version(dev):
    cp = dev.kubectl("version", "-o", "json")
    doc = json.loads(cp.stdout)
    server = doc.get("serverVersion")
    assert server, f"kubectl version printed no serverVersion: {cp.stdout}\n{cp.stderr}"
    m = SEMVER.match(server["gitVersion"])
    assert m, f"server gitVersion is not semver: {server['gitVersion']!r}"
    assert server["major"] == m.group(1), server
    assert server["minor"].rstrip("+") == m.group(2), server
    # The human form prints it as well.
    assert f"Server Version: {server['gitVersion']}" in dev.kubectl("version").stdout


def test_api_resources_lists_builtin_kinds(dev):
    rows = api_resources(dev)
    expect = {
        ("configmaps", "v1"): ("cm", "true", "ConfigMap"),
        ("namespaces", "v1"): ("ns", "false", "Namespace"),
        ("deployments", "apps/v1"): ("deploy", "true", "Deployment"),
        ("customresourcedefinitions", "apiextensions.k8s.io/v1"): ("crd,crds", "false", "CustomResourceDefinition"),
    }
    for key, (short, namespaced, kind) in expect.items():
        assert key in rows, f"{key} missing from kubectl api-resources; got {sorted(rows)}"
        row = rows[key]
        assert (row["SHORTNAMES"], row["NAMESPACED"], row["KIND"]) == (short, namespaced, kind), row


@pytest.mark.parametrize("plural,short,kind", [
    ("routes", "rt", "Route"),
    ("serviceaccountcredentials", None, "ServiceAccountCredential"),
])
def test_portcullis_crds_are_installed_at_start(dev, plural, short, kind):
    crd = f"{plural}.portcullis.dev"
    cp = dev.kubectl("get", "crd", crd, "-o", "json", check=False)
    assert cp.returncode == 0, (
        f"CRD {crd} is not installed at start (DESIGN §3: `portcullis dev` installs it): "
        f"kubectl get crd {crd} exited {cp.returncode}: {cp.stderr.strip()}")
    conditions = {c["type"]: c["status"] for c in json.loads(cp.stdout).get("status", {}).get("conditions", [])}
    assert conditions.get("Established") == "True", conditions
    rows = api_resources(dev, "--api-group=portcullis.dev")
    row = next((r for (n, _), r in rows.items() if n == plural), None)
    assert row, f"{plural} missing from `kubectl api-resources --api-group=portcullis.dev`: {rows}"
    assert row["KIND"] == kind and row["NAMESPACED"] == "true", row
    assert row["APIVERSION"] == "portcullis.dev/v1alpha1", row
    if short:
        assert short in row["SHORTNAMES"].split(","), row
        assert dev.kubectl("get", short).returncode == 0


def test_create_namespace_from_file(dev, tmp_path):
    f = write_yaml(tmp_path / "ns.yaml", namespace("e2e-team"))
    cp = dev.kubectl("create", "-f", f)
    assert cp.stdout.strip() == "namespace/e2e-team created"
    ns = dev.get_json("namespace", "e2e-team")
    assert ns["metadata"]["name"] == "e2e-team"
    assert ns.get("status", {}).get("phase") == "Active", ns
    names = dev.kubectl("get", "ns", "-o", "name").stdout.split()
    assert "namespace/e2e-team" in names and "namespace/default" in names, names
    # A namespaced object can live there.
    dev.apply_docs(configmap("inside", {"k": "v"}, namespace="e2e-team"))
    assert dev.kubectl("get", "cm", "inside", "-n", "e2e-team", "-o", "jsonpath={.data.k}").stdout == "v"


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
        },
    },
}


def test_apply_roundtrip_and_unchanged(dev, tmp_path):
    cm = configmap("app-config", {"greeting": "hello", "multi": "line1\nline2\n", "empty": ""},
                   labels={"app": "web", "team": "e2e"})
    f = write_yaml(tmp_path / "app.yaml", cm, DEPLOYMENT)
    out = dev.kubectl("apply", "-f", f).stdout.splitlines()
    assert out == ["configmap/app-config created", "deployment.apps/web created"], out

    got = yaml.safe_load(dev.kubectl("get", "configmap", "app-config", "-o", "yaml").stdout)
    assert got["data"] == cm["data"]
    assert got["metadata"]["labels"] == cm["metadata"]["labels"]
    assert got["metadata"]["namespace"] == "default"
    uuid.UUID(got["metadata"]["uid"])
    rfc3339(got["metadata"]["creationTimestamp"])
    assert got["metadata"]["resourceVersion"], got["metadata"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"].get("annotations", {})

    dep = yaml.safe_load(dev.kubectl("get", "deployment", "web", "-o", "yaml").stdout)
    assert dep["kind"] == "Deployment" and dep["apiVersion"] == "apps/v1"
    assert dep["metadata"]["labels"] == DEPLOYMENT["metadata"]["labels"]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert (c["name"], c["image"], c["ports"][0]["containerPort"]) == ("web", "nginx:1.27", 80)
    uuid.UUID(dep["metadata"]["uid"])
    assert dep["metadata"]["uid"] != got["metadata"]["uid"]
    assert dep["metadata"].get("generation") == 1, dep["metadata"]

    out = dev.kubectl("apply", "-f", f).stdout.splitlines()
    assert out == ["configmap/app-config unchanged", "deployment.apps/web unchanged"], out
    again = dev.get_json("configmap", "app-config")
    assert again["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]


SELECTOR_CMS = (
    configmap("sel-a", {"n": "1"}, labels={"app": "x", "env": "prod"}),
    configmap("sel-b", {"n": "2"}, labels={"app": "x", "env": "dev"}),
    configmap("sel-c", {"n": "3"}, labels={"app": "y"}),
    configmap("sel-d", {"n": "4"}),
)


def cm_names(dev: DevServer, *args: str) -> list[str]:
    """Names of the test's ConfigMaps (sel-*) that `kubectl get cm ARGS` returns."""
    out = dev.kubectl("get", "cm", *args, "-o", "name").stdout.split()
    return sorted(n.removeprefix("configmap/") for n in out if n.startswith("configmap/sel-"))


def test_get_json_and_jsonpath(dev):
    dev.apply_docs(*SELECTOR_CMS)
    lst = dev.get_json("cm")
    assert lst["kind"] in ("List", "ConfigMapList"), lst["kind"]
    assert {"sel-a", "sel-b", "sel-c", "sel-d"} <= {i["metadata"]["name"] for i in lst["items"]}
    one = dev.get_json("cm", "sel-b")
    assert one["kind"] == "ConfigMap" and one["data"] == {"n": "2"} and one["metadata"]["labels"] == {"app": "x", "env": "dev"}
    assert dev.kubectl("get", "cm", "sel-b", "-o", "jsonpath={.data.n}").stdout == "2"
    jp = dev.kubectl("get", "cm", "-o", "jsonpath={range .items[*]}{.metadata.name}={.data.n} {end}").stdout
    assert {"sel-a=1", "sel-b=2", "sel-c=3", "sel-d=4"} <= set(jp.split()), jp
    assert dev.kubectl("get", "cm", "sel-c", "-o", "jsonpath={.metadata.labels.app}").stdout == "y"
    assert dev.kubectl("get", "cm", "-o", "name").stdout.split().count("configmap/sel-a") == 1


@pytest.mark.parametrize("selector,expected", [pytest.param(*p, id=p[0]) for p in [
    ("app=x", ["sel-a", "sel-b"]),
    ("app==x", ["sel-a", "sel-b"]),
    ("app=x,env=prod", ["sel-a"]),
    ("app!=x", ["sel-c", "sel-d"]),  # != includes objects without the label
    ("app in (x,y),env notin (dev)", ["sel-a", "sel-c"]),
    ("env", ["sel-a", "sel-b"]),  # existence
    ("app", ["sel-a", "sel-b", "sel-c"]),
    ("!app", ["sel-d"]),  # non-existence
    ("app=nothing", []),
]])
def test_label_selectors(dev, selector, expected):
    dev.apply_docs(*SELECTOR_CMS)
    assert cm_names(dev, "-l", selector) == expected, f"kubectl get cm -l {selector!r}"
    if not expected:
        cp = dev.kubectl("get", "cm", "-l", selector)
        assert "No resources found in default namespace." in cp.stderr, cp


@pytest.mark.parametrize("args,expected", [pytest.param(*p, id=" ".join(p[0])) for p in [
    (("--field-selector", "metadata.name=sel-c"), ["sel-c"]),
    (("--field-selector", "metadata.name==sel-c"), ["sel-c"]),
    (("--field-selector", "metadata.name!=sel-c", "-l", "app=x"), ["sel-a", "sel-b"]),
    (("--field-selector", "metadata.name!=sel-c"), ["sel-a", "sel-b", "sel-d"]),
    (("--field-selector", "metadata.namespace=default", "-l", "app=y"), ["sel-c"]),
    (("--field-selector", "metadata.namespace=elsewhere"), []),
    (("--field-selector", "metadata.name=sel-a,metadata.namespace=default"), ["sel-a"]),
]])
def test_field_selectors(dev, args, expected):
    dev.apply_docs(*SELECTOR_CMS)
    assert cm_names(dev, *args) == expected, f"kubectl get cm {' '.join(args)}"


def test_delete_then_get_is_notfound(dev):
    dev.apply_docs(configmap("doomed", {"a": "b"}))
    cp = dev.kubectl("delete", "configmap", "doomed")
    # kubectl 1.35 adds the namespace to the message.
    assert cp.stdout.strip() in ('configmap "doomed" deleted',
                                 'configmap "doomed" deleted from default namespace')
    cp = dev.kubectl_fails("get", "configmap", "doomed")
    assert "NotFound" in cp.stderr and '"doomed"' in cp.stderr, cp.stderr


def test_delete_missing_object(dev):
    cp = dev.kubectl_fails("delete", "configmap", "never-was")
    assert "NotFound" in cp.stderr and "never-was" in cp.stderr, cp.stderr
    cp = dev.kubectl("delete", "configmap", "never-was", "--ignore-not-found")
    assert cp.stdout.strip() == ""
    cp = dev.kubectl_fails("delete", "namespace", "no-such-ns")
    assert "NotFound" in cp.stderr, cp.stderr


@pytest.mark.parametrize("ns", ["default", "kube-system", "kube-public"])
def test_system_namespaces_cannot_be_deleted(dev, ns):
    dev.apply_docs(configmap("survivor", {"k": "v"}, namespace=ns))
    cp = dev.kubectl_fails("delete", "namespace", ns, "--wait=false")
    assert "Forbidden" in cp.stderr and "may not be deleted" in cp.stderr, cp.stderr
    got = dev.get_json("namespace", ns)
    assert got.get("status", {}).get("phase") == "Active" and "deletionTimestamp" not in got["metadata"], got
    assert dev.kubectl("get", "cm", "survivor", "-n", ns, "-o", "jsonpath={.data.k}").stdout == "v"


def test_create_existing_is_already_exists(dev, tmp_path):
    f = write_yaml(tmp_path / "cm.yaml", configmap("twice", {"v": "1"}))
    assert dev.kubectl("create", "-f", f).stdout.strip() == "configmap/twice created"
    before = dev.get_json("cm", "twice")
    write_yaml(f, configmap("twice", {"v": "2"}))
    cp = dev.kubectl_fails("create", "-f", f)
    assert "AlreadyExists" in cp.stderr and "twice" in cp.stderr, cp.stderr
    after = dev.get_json("cm", "twice")
    assert after["data"] == {"v": "1"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


# ============================================================================================
# 2. custom resources
# ============================================================================================


@pytest.fixture
def wdev(dev) -> DevServer:
    """A server with widgets.example.com installed."""
    install_widget_crd(dev)
    return dev


def test_crd_install_short_name_and_update(dev, tmp_path):
    f = write_yaml(tmp_path / "crd.yaml", WIDGET_CRD)
    cp = dev.kubectl("apply", "-f", f)
    assert cp.stdout.strip() == "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    cp = dev.kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/widgets.example.com")
    assert "condition met" in cp.stdout
    crd = dev.get_json("crd", "widgets.example.com")
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds.get("NamesAccepted") == "True", conds
    assert crd["status"].get("acceptedNames", {}).get("shortNames") == ["wd"], crd["status"]

    def discovered():
        rows = api_resources(dev, "--api-group=example.com")
        return rows.get(("widgets", "example.com/v1"))

    row = wait_for(discovered, 30, what="widgets in kubectl api-resources")
    assert (row["SHORTNAMES"], row["NAMESPACED"], row["KIND"]) == ("wd", "true", "Widget"), row

    wf = write_yaml(tmp_path / "w.yaml", widget("w1", 3, "blue", labels={"app": "w"}))
    assert dev.kubectl("apply", "-f", wf).stdout.strip() == "widget.example.com/w1 created"
    w = dev.get_json("wd", "w1")
    assert (w["kind"], w["apiVersion"]) == ("Widget", "example.com/v1")
    assert w["spec"] == {"size": 3, "color": "blue"}
    assert dev.kubectl("get", "widget", "w1", "-o", "name").stdout.strip() == "widget.example.com/w1"
    assert dev.kubectl("get", "widgets.example.com", "-o", "name").stdout.split() == ["widget.example.com/w1"]

    # A changed custom resource goes through `kubectl apply`'s merge patch.
    write_yaml(wf, widget("w1", 7, "red", labels={"app": "w", "rev": "2"}))
    assert dev.kubectl("apply", "-f", wf).stdout.strip() == "widget.example.com/w1 configured"
    w2 = dev.get_json("wd", "w1")
    assert w2["spec"] == {"size": 7, "color": "red"}
    assert w2["metadata"]["labels"] == {"app": "w", "rev": "2"}
    assert w2["metadata"]["uid"] == w["metadata"]["uid"]
    assert int(w2["metadata"]["resourceVersion"]) > int(w["metadata"]["resourceVersion"])
    # Removing a field from the file removes it from the object (last-applied three-way merge).
    write_yaml(wf, widget("w1", 4, None, labels={"app": "w"}))
    assert dev.kubectl("apply", "-f", wf).stdout.strip() == "widget.example.com/w1 configured"
    w3 = dev.get_json("wd", "w1")
    assert w3["spec"] == {"size": 4}, w3["spec"]
    assert w3["metadata"]["labels"] == {"app": "w"}
    assert dev.kubectl("apply", "-f", wf).stdout.strip() == "widget.example.com/w1 unchanged"


INVALID_WIDGETS = {
    # case: (spec, words the error must contain)
    "missing-size": ({"color": "blue"}, ["spec.size", "Required"]),
    "wrong-type": ({"size": "three", "color": "blue"}, ["spec.size", "integer"]),
    "too-big": ({"size": 11, "color": "red"}, ["spec.size"]),
    "too-small": ({"size": 0, "color": "red"}, ["spec.size"]),
    "bad-enum": ({"size": 2, "color": "green"}, ["spec.color", "green"]),
    "cel-rule": ({"size": 8, "color": "blue"}, [WIDGET_CEL_MESSAGE]),
    "unknown-field": ({"size": 2, "color": "blue", "bogus": True}, ["unknown field", "bogus"]),
}


@pytest.mark.parametrize("case", list(INVALID_WIDGETS))
def test_widget_validation_errors_name_the_field(wdev, tmp_path, case):
    spec, words = INVALID_WIDGETS[case]
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": f"bad-{case}"}, "spec": spec}
    f = write_yaml(tmp_path / "bad.yaml", doc)
    cp = wdev.kubectl_fails("apply", "-f", f)  # --validate=strict is kubectl's default
    for w in words:
        assert w in cp.stderr, f"kubectl's error does not mention {w!r}:\n{cp.stderr}"
    assert "invalid" in cp.stderr.lower() or "unknown field" in cp.stderr, cp.stderr
    assert not wdev.exists("widget", f"bad-{case}"), "an invalid widget was stored"
    # `kubectl create` goes through the same validation
    cp = wdev.kubectl_fails("create", "-f", f)
    for w in words:
        assert w in cp.stderr, f"kubectl create's error does not mention {w!r}:\n{cp.stderr}"


def test_widget_validation_applies_to_updates(wdev):
    wdev.apply_docs(widget("small", 2, "blue"))
    cp = wdev.kubectl_fails("patch", "widget", "small", "--type=merge", "-p", '{"spec":{"size":9}}')
    assert WIDGET_CEL_MESSAGE in cp.stderr, cp.stderr
    cp = wdev.kubectl_fails("patch", "widget", "small", "--type=json",
                            "-p", '[{"op":"replace","path":"/spec/size","value":42}]')
    assert "spec.size" in cp.stderr, cp.stderr
    assert wdev.get_json("widget", "small")["spec"] == {"size": 2, "color": "blue"}


def test_widget_merge_and_json_patch(wdev):
    wdev.apply_docs(widget("p1", 2, "blue", labels={"a": "1"}))
    cp = wdev.kubectl("patch", "widget", "p1", "--type=merge", "-p", '{"spec":{"size":4},"metadata":{"labels":{"b":"2"}}}')
    assert cp.stdout.strip() == "widget.example.com/p1 patched"
    w = wdev.get_json("widget", "p1")
    assert w["spec"] == {"size": 4, "color": "blue"}
    assert w["metadata"]["labels"] == {"a": "1", "b": "2"}

    # merge patch null deletes
    wdev.kubectl("patch", "widget", "p1", "--type=merge", "-p", '{"metadata":{"labels":{"a":null}}}')
    assert wdev.get_json("widget", "p1")["metadata"]["labels"] == {"b": "2"}

    cp = wdev.kubectl("patch", "wd", "p1", "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/color", "value": "red"},
        {"op": "replace", "path": "/spec/size", "value": 9},
        {"op": "add", "path": "/metadata/labels/c", "value": "3"},
    ]))
    assert cp.stdout.strip() == "widget.example.com/p1 patched"
    w = wdev.get_json("widget", "p1")
    assert w["spec"] == {"size": 9, "color": "red"}
    assert w["metadata"]["labels"] == {"b": "2", "c": "3"}

    # A failing JSON-patch test op changes nothing.
    cp = wdev.kubectl_fails("patch", "wd", "p1", "--type=json", "-p", json.dumps([
        {"op": "test", "path": "/spec/size", "value": 1},
        {"op": "replace", "path": "/spec/size", "value": 2},
    ]))
    assert wdev.get_json("widget", "p1")["spec"]["size"] == 9

    # A patch of nothing changes nothing.
    cp = wdev.kubectl("patch", "wd", "p1", "--type=merge", "-p", '{"spec":{"size":9}}')
    assert cp.stdout.strip() == "widget.example.com/p1 patched (no change)"


def test_widget_status_subresource(wdev):
    wdev.apply_docs(widget("s1", 2, "blue"))
    cp = wdev.kubectl("patch", "widget", "s1", "--subresource=status", "--type=merge",
                      "-p", '{"status":{"phase":"Ready","observed":1}}')
    assert cp.stdout.strip() == "widget.example.com/s1 patched"
    w = wdev.get_json("widget", "s1")
    assert w["status"] == {"phase": "Ready", "observed": 1}
    assert w["spec"] == {"size": 2, "color": "blue"}

    # A normal patch of .status is ignored.
    cp = wdev.kubectl("patch", "widget", "s1", "--type=merge", "-p", '{"status":{"phase":"Hacked"}}')
    assert wdev.get_json("widget", "s1")["status"] == {"phase": "Ready", "observed": 1}, cp.stdout
    # And a status patch does not change the spec.
    wdev.kubectl("patch", "widget", "s1", "--subresource=status", "--type=merge",
                 "-p", '{"spec":{"size":5},"status":{"phase":"Done"}}')
    w = wdev.get_json("widget", "s1")
    assert w["spec"] == {"size": 2, "color": "blue"}
    assert w["status"]["phase"] == "Done"
    # kubectl get --subresource=status shows it too
    st = json.loads(wdev.kubectl("get", "widget", "s1", "--subresource=status", "-o", "json").stdout)
    assert st["status"]["phase"] == "Done"


def test_widget_generation(wdev):
    wdev.apply_docs(widget("g1", 2, "blue"))

    def gen():
        return wdev.get_json("widget", "g1")["metadata"].get("generation")

    assert gen() == 1
    wdev.kubectl("patch", "widget", "g1", "--type=merge", "-p", '{"spec":{"size":3}}')
    assert gen() == 2, "generation must rise on a spec change"
    wdev.kubectl("label", "widget", "g1", "touched=yes")
    wdev.kubectl("annotate", "widget", "g1", "note=hi")
    assert gen() == 2, "generation must not rise on a label/annotation change"
    wdev.kubectl("patch", "widget", "g1", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"X"}}')
    assert gen() == 2, "generation must not rise on a status change"
    wdev.kubectl("patch", "widget", "g1", "--type=json", "-p", '[{"op":"replace","path":"/spec/color","value":"red"}]')
    assert gen() == 3


def test_deleting_crd_removes_kind_and_objects(wdev):
    wdev.apply_docs(widget("d1", 2, "blue"), widget("d2", 3, "red"))
    assert len(wdev.get_json("widgets")["items"]) == 2
    cp = wdev.kubectl("delete", "crd", "widgets.example.com")
    assert 'customresourcedefinition.apiextensions.k8s.io "widgets.example.com" deleted' in cp.stdout

    def kind_gone():
        cp = wdev.kubectl("get", "widgets", check=False)
        return cp.returncode != 0 and cp

    cp = wait_for(kind_gone, 30, what="`kubectl get widgets` to fail once the CRD is deleted")
    assert "widgets" in cp.stderr or "NotFound" in cp.stderr or "could not find" in cp.stderr, cp.stderr
    r = wdev.api("GET", "/apis/example.com/v1/namespaces/default/widgets")
    assert r.status == 404, r
    # Re-install: the old objects must not come back.
    install_widget_crd(wdev)
    assert wdev.get_json("widgets")["items"] == []
    assert not wdev.exists("widget", "d1")


# ============================================================================================
# 3. watch
# ============================================================================================


class JsonStream:
    """Reads a kubectl -o json stream (concatenated JSON values) from a subprocess with deadlines."""

    def __init__(self, proc):
        self.proc = proc
        self.q: queue.Queue = queue.Queue()
        self.raw: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        dec = json.JSONDecoder()
        buf = ""
        for chunk in iter(lambda: self.proc.stdout.readline(), b""):
            s = chunk.decode("utf-8", "replace")
            self.raw.append(s)
            buf += s
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    val, end = dec.raw_decode(stripped)
                except ValueError:
                    break
                self.q.put(val)
                buf = stripped[end:]
        self.q.put(None)

    def until(self, pred, timeout: float, what: str) -> list[dict]:
        """Collect events until `pred(event)` is true; returns everything seen up to it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout:.0f}s; saw {[(e.get('type'), e.get('object', {}).get('metadata', {}).get('name')) for e in seen]}")
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                raise AssertionError(f"watch ended before {what}; exit {self.proc.poll()}; stderr: {err}; "
                                     f"saw {seen}")
            seen.append(ev)
            if pred(ev):
                return seen


def test_kubectl_watch_sees_added_modified_deleted(dev):
    dev.apply_docs(configmap("sentinel", {"a": "0"}))
    proc = dev.kubectl_popen("get", "cm", "-w", "--output-watch-events", "-o", "json")
    try:
        stream = JsonStream(proc)

        def is_(typ, name):
            return lambda e: e.get("type") == typ and e.get("object", {}).get("metadata", {}).get("name") == name

        # the initial list arrives as ADDED: once the sentinel is there, the watch is running
        stream.until(is_("ADDED", "sentinel"), 60, "initial ADDED sentinel")

        dev.create_docs(configmap("watched", {"v": "1"}))
        ev = stream.until(is_("ADDED", "watched"), 30, "ADDED watched")[-1]
        assert ev["object"]["data"] == {"v": "1"}
        rv_added = int(ev["object"]["metadata"]["resourceVersion"])

        dev.kubectl("patch", "cm", "watched", "--type=merge", "-p", '{"data":{"v":"2"}}')
        ev = stream.until(is_("MODIFIED", "watched"), 30, "MODIFIED watched")[-1]
        assert ev["object"]["data"] == {"v": "2"}
        rv_mod = int(ev["object"]["metadata"]["resourceVersion"])
        assert rv_mod > rv_added

        dev.kubectl("delete", "cm", "watched")
        ev = stream.until(is_("DELETED", "watched"), 30, "DELETED watched")[-1]
        assert int(ev["object"]["metadata"]["resourceVersion"]) >= rv_mod
        assert proc.poll() is None, "the watch ended on its own"
    finally:
        proc.kill()
        proc.wait(timeout=10)


# ============================================================================================
# 4. bad input over raw HTTP
# ============================================================================================


def assert_status(r, code: int, reason: str | None = None):
    assert r.status == code, f"expected HTTP {code}, got {r}"
    doc = r.json()
    assert doc.get("kind") == "Status" and doc.get("apiVersion") == "v1", doc
    assert doc.get("code") == code, doc
    assert doc.get("status") == "Failure", doc
    if reason:
        assert doc.get("reason") == reason, doc
    return doc


def assert_still_serves(dev):
    assert dev.running(), "server died"
    assert "namespace/default" in dev.kubectl("get", "ns", "-o", "name").stdout.split()
    assert dev.admin_get("/readyz")[0] == 200


CM_PATH = "/api/v1/namespaces/default/configmaps"


def test_malformed_json_is_400(dev):
    r = dev.api("POST", CM_PATH, '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ')
    assert_status(r, 400, "BadRequest")
    r = dev.api("POST", CM_PATH, b"\xff\xfe not json at all")
    assert_status(r, 400)
    r = dev.api("PATCH", CM_PATH + "/x", "{{{", headers={"Content-Type": "application/merge-patch+json"})
    assert r.status in (400, 404), r  # 404 is fine when the object is looked up first
    assert_still_serves(dev)


def test_unknown_resource_path_is_404(dev):
    assert_status(dev.api("GET", "/api/v1/namespaces/default/gizmos"), 404, "NotFound")
    assert_status(dev.api("GET", "/apis/nope.example.com/v1/things"), 404)
    assert_status(dev.api("GET", "/api/v1/namespaces/default/configmaps/absent"), 404, "NotFound")
    assert_still_serves(dev)


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_missing_or_wrong_token_is_401(dev, token):
    r = dev.api("GET", "/api/v1/namespaces", token=token)
    assert r.status == 401, r
    r = dev.api("POST", CM_PATH, configmap("sneaky", {"a": "b"}), token=token)
    assert r.status == 401, r
    assert not dev.exists("cm", "sneaky")
    # the right token works
    assert dev.api("GET", "/api/v1/namespaces").status == 200
    assert_still_serves(dev)


def test_kubectl_with_wrong_token_is_unauthorized(dev, tmp_path):
    doc = dev.kubeconfig_doc()
    doc["users"][0]["user"]["token"] = "0" * 64
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    cp = dev.kubectl("--kubeconfig", bad, "get", "ns", check=False)
    assert cp.returncode == 1, cp
    assert "Unauthorized" in cp.stderr or "must be logged in" in cp.stderr, cp.stderr


def test_body_over_3mib_is_413(dev):
    big = configmap("huge", {"blob": "x" * (3 * 1024 * 1024 + 4096)})
    r = dev.api("POST", CM_PATH, big)
    assert r.status == 413, r
    assert not dev.exists("cm", "huge")
    # a large but acceptable body still works
    ok = configmap("large", {"blob": "y" * (512 * 1024)})
    r = dev.api("POST", CM_PATH, ok)
    assert r.status == 201, r
    assert_still_serves(dev)


def test_strategic_merge_patch_on_custom_resource_is_415(wdev):
    wdev.apply_docs(widget("smp", 2, "blue"))
    r = wdev.api("PATCH", "/apis/example.com/v1/namespaces/default/widgets/smp", {"spec": {"size": 3}},
                 headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert_status(r, 415, "UnsupportedMediaType")
    assert wdev.get_json("widget", "smp")["spec"]["size"] == 2
    # kubectl's own strategic patch on a CR fails the same way, and names the reason
    cp = wdev.kubectl_fails("patch", "widget", "smp", "--type=strategic", "-p", '{"spec":{"size":3}}')
    assert "415" in cp.stderr or "UnsupportedMediaType" in cp.stderr or "not supported" in cp.stderr, cp.stderr
    assert_still_serves(wdev)


def test_stale_resource_version_put_is_409(dev):
    dev.apply_docs(configmap("occ", {"v": "1"}))
    obj = dev.api("GET", CM_PATH + "/occ").json()
    stale = json.loads(json.dumps(obj))
    obj["data"] = {"v": "2"}
    r = dev.api("PUT", CM_PATH + "/occ", obj)
    assert r.status == 200, r
    new_rv = r.json()["metadata"]["resourceVersion"]
    assert int(new_rv) > int(stale["metadata"]["resourceVersion"])
    stale["data"] = {"v": "stale"}
    r = dev.api("PUT", CM_PATH + "/occ", stale)
    assert_status(r, 409, "Conflict")
    got = dev.get_json("cm", "occ")
    assert got["data"] == {"v": "2"} and got["metadata"]["resourceVersion"] == new_rv
    # kubectl replace with a stale version is refused too
    cp = dev.kubectl_fails("replace", "-f", "-", input=json.dumps(stale))
    assert "Conflict" in cp.stderr or "modified" in cp.stderr, cp.stderr
    assert_still_serves(dev)


@pytest.mark.parametrize("selector", ["app in (x", "=x", "a==b==c", "app notin x", "!"])
def test_invalid_label_selector_is_400(dev, selector):
    r = dev.api("GET", f"{CM_PATH}?labelSelector={quote(selector)}")
    assert_status(r, 400, "BadRequest")
    cp = dev.kubectl_fails("get", "cm", "-l", selector)
    assert cp.stderr.strip(), cp
    assert_still_serves(dev)


@pytest.mark.parametrize("selector", ["spec.foo=x", "data.key=v", "metadata.labels=x"])
def test_unsupported_field_selector_is_400(dev, selector):
    r = dev.api("GET", f"{CM_PATH}?fieldSelector={quote(selector)}")
    assert_status(r, 400, "BadRequest")
    doc = r.json()
    assert selector.split("=")[0] in doc.get("message", ""), doc
    cp = dev.kubectl_fails("get", "cm", "--field-selector", selector)
    assert "BadRequest" in cp.stderr or "field label not supported" in cp.stderr, cp.stderr
    assert_still_serves(dev)


def test_server_survives_a_barrage_of_bad_requests(wdev):
    wdev.apply_docs(configmap("keep", {"k": "v"}))
    requests = {  # what: (expected status, method, path, body, kwargs)
        "malformed json": (400, "POST", CM_PATH, "{oops", {}),
        "unknown resource": (404, "GET", "/api/v1/namespaces/default/gizmos", None, {}),
        "no token": (401, "GET", "/api/v1/namespaces", None, {"token": None}),
        "wrong token": (401, "GET", "/api/v1/namespaces", None, {"token": "nope"}),
        "body over 3 MiB": (413, "POST", CM_PATH, configmap("huge", {"b": "x" * (3 * 1024 * 1024 + 1)}), {}),
        "strategic merge patch on a CR": (415, "PATCH", "/apis/example.com/v1/namespaces/default/widgets/none",
                                          {"spec": {}},
                                          {"headers": {"Content-Type": "application/strategic-merge-patch+json"}}),
        "bad label selector": (400, "GET", f"{CM_PATH}?labelSelector={quote('a in (')}", None, {}),
        "unsupported field selector": (400, "GET", f"{CM_PATH}?fieldSelector={quote('spec.foo=x')}", None, {}),
        # names longer than 253 characters cannot exist: 404 (or 400)
        "overlong name": ((400, 404), "GET", f"{CM_PATH}/{'a' * 5000}", None, {}),
    }
    got = {}
    for what, (want, method, path, body, kw) in requests.items():
        got[what] = wdev.api(method, path, body, **kw).status
    wrong = {w: f"got {got[w]}, want {want}" for w, (want, *_) in requests.items()
             if got[w] not in (want if isinstance(want, tuple) else (want,))}
    assert not wrong, f"unexpected answers: {wrong}"
    assert_still_serves(wdev)
    assert wdev.get_json("cm", "keep")["data"] == {"k": "v"}


def test_namespaces_have_no_deletecollection(dev):
    """Kubernetes serves no deletecollection for namespaces (405): one stray DELETE on the
    collection must not wipe every namespace and everything in them."""
    dev.apply_docs(namespace("bystander"), configmap("cm", {"k": "v"}, namespace="bystander"))
    r = dev.api("DELETE", "/api/v1/namespaces")
    assert r.status in (403, 404, 405), f"DELETE /api/v1/namespaces answered {r}"
    names = dev.kubectl("get", "ns", "-o", "name").stdout.split()
    for ns in ("default", "kube-system", "bystander"):
        assert f"namespace/{ns}" in names, names
        assert "deletionTimestamp" not in dev.get_json("ns", ns)["metadata"], ns
    disc = dev.api("GET", "/api/v1").json()
    verbs = next(r["verbs"] for r in disc["resources"] if r["name"] == "namespaces")
    assert "deletecollection" not in verbs, verbs


def test_duplicate_and_unknown_fields_follow_field_validation(dev):
    path = "/api/v1/namespaces/default/configmaps?fieldValidation="
    body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup-a","name":"dup-b"},' \
           '"data":{"k":"v"},"bogus":1}'
    r = dev.api("POST", path + "Strict", body)
    assert r.status == 400, r
    assert r.json()["message"] == 'strict decoding error: duplicate field "metadata.name"'
    assert not dev.exists("configmap", "dup-b")

    r = dev.api("POST", path + "Warn", body)
    assert r.status == 201, r
    warnings = [v for k, v in r.headers.items() if k.lower() == "warning"]
    joined = " ".join(warnings)
    assert 'duplicate field \\"metadata.name\\"' in joined and 'unknown field \\"bogus\\"' in joined, r.headers
    created = dev.get_json("configmap", "dup-b")
    assert "bogus" not in created and created["data"] == {"k": "v"}

    r = dev.api("POST", path + "Ignore", body.replace("dup-b", "dup-c"))
    assert r.status == 201, r
    assert not any(k.lower() == "warning" for k in r.headers), r.headers

    # kubectl's default (Strict) refuses an unknown field of a built-in kind, naming it.
    cp = dev.kubectl_fails("apply", "-f", "-", input='{"apiVersion":"v1","kind":"ConfigMap",'
                           '"metadata":{"name":"dup-d"},"data":{"k":"v"},"bogus":1}')
    assert 'unknown field "bogus"' in cp.stderr, cp.stderr


def test_server_side_apply_conflicts_and_force(dev):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"a": "1"}},
          "data": {"shared": "x", "mine": "1"}}
    cp = dev.kubectl("apply", "--server-side", "--field-manager", "alice", "-f", "-", input=json.dumps(cm))
    assert "serverside-applied" in cp.stdout
    # Another manager sets the same value on a shared field: no conflict, shared ownership.
    bob = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "x"}}
    dev.kubectl("apply", "--server-side", "--field-manager", "bob", "-f", "-", input=json.dumps(bob))
    # A different value is a 409 naming the field and the owner.
    bob["data"]["shared"] = "y"
    cp = dev.kubectl_fails("apply", "--server-side", "--field-manager", "bob", "-f", "-", input=json.dumps(bob))
    assert "conflict" in cp.stderr.lower() and "alice" in cp.stderr and ".data.shared" in cp.stderr, cp.stderr
    dev.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "bob", "-f", "-",
                input=json.dumps(bob))
    got = dev.get_json("configmap", "ssa", "--show-managed-fields")
    assert got["data"] == {"shared": "y", "mine": "1"}
    managers = {m["manager"]: m for m in got["metadata"]["managedFields"]}
    assert managers["bob"]["operation"] == "Apply" and managers["bob"]["fieldsType"] == "FieldsV1"
    assert "f:shared" in json.dumps(managers["bob"]["fieldsV1"])
    assert "f:shared" not in json.dumps(managers["alice"]["fieldsV1"]), "force took the field over"
    # Alice drops a field she alone applied: it is removed from the object.
    del cm["data"]["mine"]
    del cm["data"]["shared"]
    dev.kubectl("apply", "--server-side", "--field-manager", "alice", "-f", "-", input=json.dumps(cm))
    assert dev.get_json("configmap", "ssa")["data"] == {"shared": "y"}
    # Apply without a field manager is refused by the server (kubectl always sends one).
    r = dev.api("PATCH", "/api/v1/namespaces/default/configmaps/ssa", json.dumps(bob),
                headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status == 422 and "fieldManager" in r.json()["message"], r


def test_typed_generators_send_protobuf(dev):
    dev.kubectl("create", "configmap", "gen", "--from-literal=a=b", "--from-literal=c=d")
    assert dev.get_json("configmap", "gen")["data"] == {"a": "b", "c": "d"}
    dev.kubectl("create", "secret", "generic", "gen-s", "--from-literal=token=t0p")
    s = dev.get_json("secret", "gen-s")
    assert s["type"] == "Opaque" and s["data"] == {"token": "dDBw"}
    r = dev.api("POST", "/api/v1/namespaces/default/configmaps", b"k8s\x00\x0a\xff\xff",
                headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert r.status == 400 and r.json()["kind"] == "Status", r


def test_kubectl_scale_uses_the_scale_subresource(dev):
    dev.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sc"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sc"}},
                 "template": {"metadata": {"labels": {"app": "sc"}},
                              "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}}))
    cp = dev.kubectl("scale", "deployment", "sc", "--replicas=3")
    assert "scaled" in cp.stdout
    assert dev.get_json("deployment", "sc")["spec"]["replicas"] == 3
    scale = dev.api("GET", "/apis/apps/v1/namespaces/default/deployments/sc/scale").json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == "app=sc"
    scale["spec"]["replicas"] = -2
    r = dev.api("PUT", "/apis/apps/v1/namespaces/default/deployments/sc/scale", scale)
    assert r.status == 422, r
    assert dev.get_json("deployment", "sc")["spec"]["replicas"] == 3
