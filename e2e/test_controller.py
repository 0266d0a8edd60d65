"""The controller under `portcullis dev`, seen through real kubectl: routes applied with kubectl
get their status (READY column, conditions, url), and every problem is visible with
`kubectl describe` as a condition and a Warning Event (DESIGN §3, SECURITY.md "Kubernetes")."""

from __future__ import annotations

import time

from conftest import DevServer, namespace, wait_for

NS = "e2e-ctl"


def route(name: str, frm: str, to: list[dict], **spec) -> dict:
    body = {"from": frm, "to": to}
    body.update(spec)
    if "policy" not in body:
        body.setdefault("allowAnyAuthenticatedUser", True)
    return {"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def condition(dev: DevServer, name: str, type_: str) -> dict | None:
    obj = dev.get_json("route", name, "-n", NS)
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def wait_condition(dev: DevServer, name: str, type_: str, status: str) -> dict:
    def check():
        c = condition(dev, name, type_)
        assert c is not None, "no condition yet"
        assert c["status"] == status, f"{type_} is {c['status']} ({c['reason']}: {c['message']})"
        return c

    return wait_for(check, 30, what=f"route {name} {type_}={status}")


def test_routes_get_status_and_problems_show_in_describe(dev: DevServer):
    dev.apply_docs(namespace(NS))
    echo = [{"url": "http://127.0.0.1:9000"}]
    dev.apply_docs(route("first", "http://shared.localhost:8080", echo))
    wait_condition(dev, "first", "Ready", "True")
    # One-second creation timestamps: make the second claim unambiguously younger.
    time.sleep(1.1)
    dev.apply_docs(
        route("second", "http://shared.localhost:8080", echo),
        route("metadata", "http://m.localhost:8080", [{"url": "http://169.254.169.254/latest"}]),
        route("badcel", "http://cel.localhost:8080", echo,
              policy={"allow": {"or": [{"expression": "request.method =="}]}}),
    )

    c = wait_condition(dev, "second", "Accepted", "False")
    assert c["reason"] == "Conflict"
    assert "Route e2e-ctl/first" in c["message"]
    assert wait_condition(dev, "metadata", "ResolvedRefs", "False")["reason"] == "BackendNotAllowed"
    assert wait_condition(dev, "badcel", "Accepted", "False")["reason"] == "InvalidPolicy"

    first = dev.get_json("route", "first", "-n", NS)
    assert first["status"]["url"] == "http://shared.localhost:8080"
    assert first["status"]["observedGeneration"] == first["metadata"]["generation"]

    # The READY printer column shows the Ready condition.
    table = dev.kubectl("get", "routes", "-n", NS, "--no-headers").stdout
    ready = {line.split()[0]: line.split()[3] for line in table.splitlines() if line.strip()}
    assert ready["first"] == "True" and ready["second"] == "False", table

    def described(name: str, *needles: str):
        out = dev.kubectl("describe", "route", name, "-n", NS).stdout
        missing = [n for n in needles if n not in out]
        assert not missing, f"missing {missing} in:\n{out}"
        return out

    wait_for(lambda: described("second", "Conflict", "Warning", "portcullis-controller",
                               "already served by Route e2e-ctl/first"),
             30, what="the conflict in kubectl describe")
    wait_for(lambda: described("metadata", "BackendNotAllowed", "link-local"),
             30, what="the SSRF refusal in kubectl describe")
    wait_for(lambda: described("badcel", "InvalidPolicy", "spec.policy.allow.or[0].expression"),
             30, what="the CEL error in kubectl describe")

    # Deleting the winner hands the host to the next oldest claim.
    dev.kubectl("delete", "route", "first", "-n", NS)
    wait_condition(dev, "second", "Ready", "True")


def test_ingress_problems_are_events_and_status_carries_the_address(dev: DevServer):
    dev.apply_docs(namespace(NS))
    ingress = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": NS,
                     "annotations": {"portcullis.dev/allow-websockets": "yes"}},
        "spec": {"rules": [{"host": "web.localhost", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }
    # No ingressClassName: `portcullis dev` makes its IngressClass the default.
    dev.apply_docs(ingress)
    classes = dev.get_json("ingressclass", "portcullis")
    assert classes["spec"]["controller"] == "portcullis.dev/ingress-controller"

    def described():
        out = dev.kubectl("describe", "ingress", "web", "-n", NS).stdout
        assert "InvalidAnnotation" in out and "portcullis.dev/allow-websockets" in out, out
        return out

    wait_for(described, 30, what="the annotation problem in kubectl describe")
    lb = wait_for(lambda: dev.get_json("ingress", "web", "-n", NS)
                  .get("status", {}).get("loadBalancer", {}).get("ingress"),
                  30, what="status.loadBalancer")
    assert lb == [{"ip": "127.0.0.1"}]
