"""helm 4 against `portcullis dev`: install, upgrade (server-side apply), status, history,
rollback and uninstall of a chart with a CRD and a custom resource, a Deployment, RBAC objects,
a Secret and a ConfigMap.

helm: see conftest.py.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from conftest import helm as run_helm

CHART = Path(__file__).resolve().parent / "charts" / "demo"


def helm(dev, helm_bin, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_helm(helm_bin, *args, home=dev.work_dir, kubeconfig=dev.kubeconfig, check=check)


def test_helm_lifecycle(dev, helm_bin):
    ns = ["--namespace", "demo"]
    out = helm(dev, helm_bin, "install", "demo", str(CHART), *ns, "--create-namespace").stdout
    assert "STATUS: deployed" in out, out

    cm = dev.get_json("configmap", "demo-config", "-n", "demo")
    assert cm["data"]["message"] == "hello"
    secret = dev.get_json("secret", "demo-secret", "-n", "demo")
    assert base64.b64decode(secret["data"]["value"]).decode() == "s3cr3t-value"
    web = dev.get_json("deployment", "demo-web", "-n", "demo")
    assert web["spec"]["replicas"] == 1
    assert [c["name"] for c in web["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]
    assert dev.get_json("gadget", "demo-gadget", "-n", "demo")["spec"]["size"] == 1
    for kind, name in [("serviceaccount", "demo-sa"), ("role", "demo-reader"),
                       ("rolebinding", "demo-reader")]:
        assert dev.exists(kind, name, "-n", "demo"), (kind, name)
    assert dev.exists("clusterrole", "demo-demo-gadgets")
    assert dev.exists("crd", "gadgets.example.com")

    listed = helm(dev, helm_bin, "list", *ns).stdout
    assert "demo" in listed and "deployed" in listed, listed

    helm(dev, helm_bin, "upgrade", "demo", str(CHART), *ns, "--set", "message=world,replicas=2")
    assert dev.get_json("configmap", "demo-config", "-n", "demo")["data"]["message"] == "world"
    web = dev.get_json("deployment", "demo-web", "-n", "demo")
    assert web["spec"]["replicas"] == 2
    # The untouched container survives the upgrade's patch.
    assert [c["name"] for c in web["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]
    assert dev.get_json("gadget", "demo-gadget", "-n", "demo")["spec"]["size"] == 2

    status = helm(dev, helm_bin, "status", "demo", *ns).stdout
    assert "STATUS: deployed" in status and "REVISION: 2" in status, status

    helm(dev, helm_bin, "rollback", "demo", "1", *ns)
    assert dev.get_json("configmap", "demo-config", "-n", "demo")["data"]["message"] == "hello"
    assert dev.get_json("deployment", "demo-web", "-n", "demo")["spec"]["replicas"] == 1
    history = helm(dev, helm_bin, "history", "demo", *ns).stdout
    assert len([line for line in history.splitlines()[1:] if line.strip()]) == 3, history

    helm(dev, helm_bin, "uninstall", "demo", *ns)
    for kind, name in [("configmap", "demo-config"), ("secret", "demo-secret"),
                       ("deployment", "demo-web"), ("gadget", "demo-gadget")]:
        assert not dev.exists(kind, name, "-n", "demo"), (kind, name)
    assert not dev.exists("clusterrole", "demo-demo-gadgets")
    # helm never deletes CRDs it installed from crds/.
    assert dev.exists("crd", "gadgets.example.com")
    assert "demo" not in helm(dev, helm_bin, "list", *ns).stdout
    dev.kubectl("get", "ns")
