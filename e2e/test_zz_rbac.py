"""The chart's RBAC against what the controller really calls (issue: least-privilege RBAC).

Every `portcullis dev` of this suite records the distinct API calls it serves
(`--record-api-access`, see src/devapi/access.rs). The controller's calls carry the User-Agent
`portcullis-controller/<version>` (in `portcullis dev` and in the `portcullis run` processes the
chart and HA tests start). This file runs last (its name sorts last) and checks, against the
ClusterRole and Role that `helm template` renders:

- every call the controller made is granted (a Role rule counts in Portcullis's own namespace);
- when the whole suite ran, every granted (group, resource, verb) was used at least once, except
  the few listed in NOT_EXERCISED with the reason `portcullis dev` cannot exercise them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import API_ACCESS_LOGS, REPO_ROOT, helm

CHART = REPO_ROOT / "charts" / "portcullis"
CONTROLLER_AGENT = "portcullis-controller/"
# Portcullis's own namespace in `portcullis dev` and in the chart tests' `portcullis run`.
OWN_NAMESPACES = {"portcullis-system", "portcullis"}

# Granted but never called under `portcullis dev` in this suite, each for a reason.
NOT_EXERCISED = {
    # The API server checks it when an ownerReference sets blockOwnerDeletion; no request uses it.
    ("portcullis.dev", "serviceaccountcredentials/finalizers", "update"),
    # kube-runtime's Recorder patches an Event only when the same Event repeats (its series);
    # whether a test repeats one within the window depends on timing.
    ("events.k8s.io", "events", "patch"),
}


def rules(helm_bin: str, tmp_path: Path) -> tuple[list[dict], list[dict]]:
    out = helm(helm_bin, "template", "portcullis", CHART, "--namespace", "portcullis-system",
               home=tmp_path).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    cluster = [r for d in docs if d["kind"] == "ClusterRole" for r in d.get("rules", [])]
    own = [r for d in docs if d["kind"] == "Role" for r in d.get("rules", [])]
    return cluster, own


def grants(rule: dict, group: str, resource: str, verb: str) -> bool:
    return group in rule.get("apiGroups", []) and resource in rule.get("resources", []) \
        and verb in rule.get("verbs", [])


def expand(rule_list: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rule_list for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule.get("verbs", [])}


def controller_calls() -> list[dict]:
    calls = []
    for path in API_ACCESS_LOGS:
        if path.exists():
            for line in path.read_text().splitlines():
                call = json.loads(line)
                if call["userAgent"].startswith(CONTROLLER_AGENT):
                    calls.append(call)
    return calls


def test_the_chart_grants_what_the_controller_calls_and_little_more(helm_bin, tmp_path, request):
    calls = controller_calls()
    if not calls:
        pytest.skip("no portcullis dev ran before this test in this session")
    cluster, own = rules(helm_bin, tmp_path)
    missing = sorted({
        (c["verb"], c["group"], c["resource"], c["namespace"] or "(cluster)")
        for c in calls
        if not any(grants(r, c["group"], c["resource"], c["verb"]) for r in cluster)
        and not (c["namespace"] in OWN_NAMESPACES
                 and any(grants(r, c["group"], c["resource"], c["verb"]) for r in own))
    })
    assert not missing, "the chart's RBAC does not grant these calls of the controller:\n" + \
        "\n".join(f"  {v} {g or 'core'}/{r} in {ns}" for v, g, r, ns in missing)

    whole_suite = not request.config.option.keyword and not request.config.option.markexpr
    if not whole_suite:
        return
    used = {(c["group"], c["resource"], c["verb"]) for c in calls}
    unused = sorted(expand(cluster) | expand(own))
    unused = [g for g in unused if g not in used and g not in NOT_EXERCISED]
    assert not unused, "the chart grants what the controller never called in the whole suite " \
        "(remove the rule, or list it in NOT_EXERCISED with the reason):\n" + \
        "\n".join(f"  {v} {g or 'core'}/{r}" for g, r, v in unused)
