"""The Helm chart `charts/portcullis`: lint, rendered objects valid against the Kubernetes schemas
(PyPI `kubernetes-validate`), the values schema refusing bad values, what SECURITY.md asks of the
pod and of RBAC, the rendered settings accepted by the binary, and install, upgrade and uninstall
with helm 4.1 into `portcullis dev`.

`portcullis dev` runs no kubelet and no Deployment controller, so no pod of the chart ever runs
there: the install test checks the objects, and `helm --wait` is never used (docs/devapi.md).
The drift check between `crds/` and `charts/portcullis/crds/` is the Rust test
`api::tests::committed_crds_match_the_types`.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO_ROOT, free_port, helm, wait_for

CHART = REPO_ROOT / "charts" / "portcullis"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the suite's
# kubectl and helm speak.
KUBE_VERSIONS = ["1.27.0", "1.35.0"]
# Kinds of CRDs that kubernetes-validate has no schema for; checked by shape below.
NOT_BUILT_IN = {"monitoring.coreos.com/v1"}
DRAIN_SECONDS = 5  # src/proxy/listener.rs `drain_timeout`


def render(helm_bin: str, tmp_path: Path, *args: str, kube_version: str = "1.35.0") -> list[dict]:
    out = helm(helm_bin, "template", "portcullis", CHART, "--namespace", "portcullis",
               "--kube-version", kube_version, *args, home=tmp_path).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


VALUE_SETS = {"defaults": [], "all-options": ["-f", str(ALL_OPTIONS)]}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_lints_strict(helm_bin, tmp_path, values):
    out = helm(helm_bin, "lint", "--strict", CHART, *VALUE_SETS[values], home=tmp_path).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_renders_valid_kubernetes_objects(helm_bin, tmp_path, values, kube_version):
    docs = render(helm_bin, tmp_path, *VALUE_SETS[values], kube_version=kube_version)
    problems = []
    for d in docs:
        if d["apiVersion"] in NOT_BUILT_IN:
            continue
        try:
            kubernetes_validate.validate(d, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{d['kind']}/{d['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not problems, "\n".join(problems)
    kinds = sorted({d["kind"] for d in docs})
    expected = {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "IngressClass",
                "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
    if values == "all-options":
        expected |= {"NetworkPolicy", "ServiceMonitor"}
    assert set(kinds) == expected, kinds


def test_chart_optional_objects(helm_bin, tmp_path):
    docs = render(helm_bin, tmp_path, "-f", str(ALL_OPTIONS))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "admin", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}]
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    metrics = services["portcullis-metrics"]
    assert [p["name"] for p in metrics["spec"]["ports"]] == ["admin"]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    # The proxy's Service never exposes the admin port; ssh is switched off in this values file.
    proxy = services["portcullis"]
    assert [(p["name"], p["nodePort"]) for p in proxy["spec"]["ports"]] == [("https", 30443), ("http", 30080)]
    assert proxy["spec"]["type"] == "NodePort" and proxy["spec"]["externalTrafficPolicy"] == "Local"
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    admin_rule = [r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "admin", "protocol": "TCP"}]]
    assert admin_rule and admin_rule[0]["from"][0]["namespaceSelector"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 2, "selector": pdb["spec"]["selector"]}
    ingress_class = one(docs, "IngressClass")
    assert ingress_class["spec"]["controller"] == "portcullis.dev/ingress-controller"
    assert ingress_class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"

    defaults = render(helm_bin, tmp_path)
    assert "annotations" not in one(defaults, "IngressClass")["metadata"]
    assert one(defaults, "IngressClass")["metadata"]["name"] == "portcullis"
    assert [p["name"] for p in one(defaults, "Service")["spec"]["ports"]] == ["https", "http", "ssh"]
    assert one(defaults, "Service")["spec"]["type"] == "LoadBalancer"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_pod_is_locked_down(helm_bin, tmp_path, values):
    docs = render(helm_bin, tmp_path, *VALUE_SETS[values])
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["run", "--config", "/etc/portcullis/config.yaml"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MALLOC_ARENA_MAX"]["value"] == "2"
    assert env["MALLOC_MMAP_THRESHOLD_"]["value"] == "131072"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    settings = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    for name, port in ports.items():
        assert settings["listen"][name].endswith(f":{port}"), (name, settings["listen"])
    assert "namespace" not in settings  # POD_NAMESPACE: always the release namespace
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > sleep + DRAIN_SECONDS
    assert pod["topologySpreadConstraints"]
    assert deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_chart_rbac_is_least_privilege(helm_bin, tmp_path):
    docs = render(helm_bin, tmp_path)
    rules = [(d["kind"], r) for kind in ("ClusterRole", "Role") for d in by_kind(docs, kind) for r in d["rules"]]
    for kind, r in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in r.get(field, []), (kind, r)
        assert not {"escalate", "bind", "impersonate"} & set(r["verbs"]), (kind, r)
        assert not r.get("nonResourceURLs"), (kind, r)

    def granted(kind: str) -> set[tuple[str, str, str]]:
        return {(g, res, v) for k, r in rules if k == kind
                for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}

    cluster = granted("ClusterRole")
    own = granted("Role")
    # Nothing cluster-wide may delete or replace anything, or touch Leases.
    assert not {t for t in cluster if t[2] in ("delete", "deletecollection", "update") and t[1] != "serviceaccountcredentials/finalizers"}
    assert not {t for t in cluster if t[0] == "coordination.k8s.io"}
    assert ("", "secrets", "delete") in own and ("coordination.k8s.io", "leases", "create") in own
    lease_rules = [r for k, r in rules if k == "Role" and "leases" in r["resources"] and "patch" in r["verbs"]]
    assert lease_rules and lease_rules[0]["resourceNames"] == ["portcullis-leader"]
    # The controller's reads (docs/controller.md "What is watched").
    for g, res in [("portcullis.dev", "routes"), ("portcullis.dev", "serviceaccountcredentials"),
                   ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "ingressclasses"),
                   ("", "services"), ("discovery.k8s.io", "endpointslices"), ("", "secrets")]:
        assert {(g, res, "list"), (g, res, "watch")} <= cluster, (g, res)

    # Every rule of templates/rbac.yaml carries a comment naming the code that needs it.
    source = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    for i, line in enumerate(source):
        if line.strip().startswith("- apiGroups:"):
            above = source[i - 1].strip()
            assert above.startswith("#") and ("src/" in above or source[i - 2].strip().startswith("#")), (
                f"rule at templates/rbac.yaml:{i + 1} has no comment")
    commented = "\n".join(source)
    assert len(re.findall(r"src/controller/", commented)) >= 8


@pytest.mark.parametrize("values", VALUE_SETS)
def test_chart_settings_are_accepted_by_portcullis(helm_bin, portcullis_bin, tmp_path, values):
    """The rendered settings file passes the binary's own validation: `portcullis run` gets past
    loading settings and stops only at the (missing) kubeconfig."""
    docs = render(helm_bin, tmp_path, *VALUE_SETS[values])
    config = tmp_path / "config.yaml"
    config.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    cp = subprocess.run([str(portcullis_bin), "run", "--config", str(config), "--kubeconfig",
                         str(tmp_path / "no-kubeconfig")], capture_output=True, text=True, timeout=30,
                        env={"PATH": "/usr/bin:/bin", "POD_NAMESPACE": "portcullis"})
    assert cp.returncode != 0
    assert "setting `" not in cp.stderr and "connecting to the Kubernetes API" in cp.stderr, cp.stderr


BAD_VALUES = [
    (["--set", "config.log.level=loud"], "/config/log/level", "must be one of"),
    (["--set", "service.type=Ingress"], "/service/type", "must be one of"),
    (["--set", "config.sessionLifetime=1d"], "/config/sessionLifetime", "does not match pattern"),
    (["--set", "replicaCount=0"], "/replicaCount", "minimum"),
    (["--set", "replicas=2"], "additional properties 'replicas' not allowed", ""),
    (["--set", "config.idp.clientSecret=hunter2"], "/config/idp", "additional properties 'clientSecret' not allowed"),
    (["--set", "config.idp.issuer=https://accounts.example.com"], "/config/idp", "clientID"),
    (["--set", "config.authenticateURL=auth.example.com"], "/config/authenticateURL", "does not match pattern"),
    (["--set-json", 'config.identityProviders={"ci":{"issuer":"https://ci.example","audiences":[]}}'],
     "/config/identityProviders/ci/audiences", "minItems"),
    (["--set", "config.signing.algorithm=HS256"], "/config/signing/algorithm", "must be one of"),
    (["--set", "ports.admin=70000"], "/ports/admin", "maximum"),
    (["--set", "config.watchNamespaces[0]=Team_A"], "/config/watchNamespaces/0", "does not match pattern"),
]


@pytest.mark.parametrize("args,path,message", BAD_VALUES, ids=[a[-1].split("=")[0] for a, _, _ in BAD_VALUES])
def test_chart_schema_rejects_bad_values(helm_bin, tmp_path, args, path, message):
    cp = helm(helm_bin, "template", "portcullis", CHART, *args, home=tmp_path, check=False)
    assert cp.returncode != 0, cp.stdout[:500]
    # A schema error naming the value, not a template that crashed on it.
    assert "values don't meet the specifications of the schema" in cp.stderr, cp.stderr
    assert path in cp.stderr and message in cp.stderr, cp.stderr
    assert "execution error" not in cp.stderr and "hunter2" not in cp.stderr, cp.stderr


def test_chart_refuses_a_grace_period_shorter_than_the_drain(helm_bin, tmp_path):
    cp = helm(helm_bin, "template", "portcullis", CHART, "--set", "terminationGracePeriodSeconds=10",
              "--set", "preStopSleepSeconds=5", home=tmp_path, check=False)
    assert cp.returncode != 0
    assert "terminationGracePeriodSeconds (10) must be longer than preStopSleepSeconds (5)" in cp.stderr, cp.stderr


def test_chart_install_upgrade_uninstall(dev, helm_bin):
    """helm 4.1 against `portcullis dev`. Its own IngressClass `portcullis` already exists there,
    so the chart's is named `portcullis-chart`; the CRDs exist too and helm leaves them be."""
    ns = ["--namespace", "portcullis"]
    common = [*ns, "--set", "ingressClass.name=portcullis-chart"]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return helm(helm_bin, *args, home=dev.work_dir, kubeconfig=dev.kubeconfig, check=check)

    out = run("install", "portcullis", CHART, *common, "--create-namespace").stdout
    assert "STATUS: deployed" in out, out
    assert "config.authenticateURL is not set" in out, out  # NOTES.txt

    names = {
        ("deployment", "portcullis"), ("service", "portcullis"), ("serviceaccount", "portcullis"),
        ("configmap", "portcullis"), ("role", "portcullis"), ("rolebinding", "portcullis"),
        ("poddisruptionbudget", "portcullis"),
    }
    for kind, name in names:
        assert dev.exists(kind, name, "-n", "portcullis"), (kind, name)
    for kind, name in [("clusterrole", "portcullis"), ("clusterrolebinding", "portcullis"),
                       ("ingressclass", "portcullis-chart"), ("crd", "routes.portcullis.dev"),
                       ("crd", "serviceaccountcredentials.portcullis.dev")]:
        assert dev.exists(kind, name), (kind, name)
    deploy = dev.get_json("deployment", "portcullis", "-n", "portcullis")
    assert deploy["spec"]["replicas"] == 2
    checksum = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    binding = dev.get_json("clusterrolebinding", "portcullis")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "portcullis", "namespace": "portcullis"}]

    values = dev.work_dir / "upgrade-values.yaml"
    values.write_text(yaml.safe_dump({
        "replicaCount": 3,
        "config": {"authenticateURL": "https://auth.example.com", "log": {"level": "debug"}},
        "networkPolicy": {"enabled": True},
    }))
    out = run("upgrade", "portcullis", CHART, *common, "-f", values).stdout
    assert "config.authenticateURL is not set" not in out, out
    deploy = dev.get_json("deployment", "portcullis", "-n", "portcullis")
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
    settings = yaml.safe_load(dev.get_json("configmap", "portcullis", "-n", "portcullis")["data"]["config.yaml"])
    assert settings["authenticateURL"] == "https://auth.example.com" and settings["log"]["level"] == "debug"
    assert dev.exists("networkpolicy", "portcullis", "-n", "portcullis")
    status = run("status", "portcullis", *ns).stdout
    assert "STATUS: deployed" in status and "REVISION: 2" in status, status

    # A bad value on upgrade is refused before anything changes.
    bad = run("upgrade", "portcullis", CHART, *common, "--set", "service.type=Ingress", check=False)
    assert bad.returncode != 0 and "/service/type" in bad.stderr, bad.stderr
    assert "REVISION: 2" in run("status", "portcullis", *ns).stdout

    run("uninstall", "portcullis", *ns)
    for kind, name in names | {("networkpolicy", "portcullis")}:
        assert not dev.exists(kind, name, "-n", "portcullis"), (kind, name)
    for kind, name in [("clusterrole", "portcullis"), ("clusterrolebinding", "portcullis"),
                       ("ingressclass", "portcullis-chart")]:
        assert not dev.exists(kind, name), (kind, name)
    # helm never deletes CRDs (and with them every Route and credential).
    assert dev.exists("crd", "routes.portcullis.dev")
    assert "portcullis" not in run("list", *ns).stdout.split()


def test_install_doc_values_reference_is_current():
    """docs/install.md's values reference is generated from values.schema.json and values.yaml."""
    cp = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gen-chart-values-doc.py"), "--check"],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    doc = (REPO_ROOT / "docs" / "install.md").read_text()
    schema_keys = re.findall(r'^\| `([a-zA-Z.<>]+)` \|', doc, re.M)
    assert "config.authenticateURL" in schema_keys and "serviceMonitor.enabled" in schema_keys


def test_chart_settings_run_against_the_embedded_api(dev, helm_bin, portcullis_bin, tmp_path):
    """What a pod of the chart would do, outside a pod: install the chart, take the settings file
    from its ConfigMap and start `portcullis run` with the Deployment's environment (POD_NAME,
    POD_NAMESPACE). It turns ready, holds the Lease and creates the signing keys in the release
    namespace. Only the listen addresses are moved to free loopback ports."""
    helm(helm_bin, "install", "portcullis", CHART, "--namespace", "portcullis", "--create-namespace",
         "--set", "ingressClass.create=false", "--set", "config.authenticateURL=http://auth.example.com",
         home=dev.work_dir, kubeconfig=dev.kubeconfig)
    config = tmp_path / "config.yaml"
    config.write_text(dev.get_json("configmap", "portcullis", "-n", "portcullis")["data"]["config.yaml"])
    env_spec = dev.get_json("deployment", "portcullis", "-n", "portcullis")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env_spec] == [
        "POD_NAME", "POD_NAMESPACE", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]
    admin = free_port()
    env = {"PATH": "/usr/bin:/bin", "POD_NAME": "portcullis-7d9c-abcde", "POD_NAMESPACE": "portcullis",
           "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072",
           "PORTCULLIS_LISTEN_HTTP": f"127.0.0.1:{free_port()}", "PORTCULLIS_LISTEN_HTTPS": f"127.0.0.1:{free_port()}",
           "PORTCULLIS_LISTEN_SSH": f"127.0.0.1:{free_port()}", "PORTCULLIS_LISTEN_ADMIN": f"127.0.0.1:{admin}"}
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([str(portcullis_bin), "run", "--config", str(config), "--kubeconfig", str(dev.kubeconfig)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def ready():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200

        wait_for(ready, 60, what="portcullis run: /readyz -> 200")
        wait_for(lambda: dev.get_json("lease", "portcullis-leader", "-n", "portcullis")["spec"]["holderIdentity"]
                 == "portcullis-7d9c-abcde", 30, what="the Lease in the release namespace held by POD_NAME")
        wait_for(lambda: dev.exists("secret", "portcullis-signing-keys", "-n", "portcullis"), 30,
                 what="the signing keys in the release namespace")
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
