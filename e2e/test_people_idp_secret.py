"""A missing identity-provider Secret (issue #8 "Bad input", issue #9 item 2): `idp.clientSecretRef`
names a Secret in Portcullis's namespace that does not exist yet.

Expected: `portcullis dev` starts; the Route that lets people in reports `ResolvedRefs=False`
(`IdentityProviderUnavailable`, naming the Secret) and still serves tokens; a Route for machines
only is untouched; a browser is sent to sign in and the sign-in page answers 503, never 500. Once
the Secret is created with kubectl, the condition clears and sign-in goes to the provider.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from conftest import DevServer, ServerExited, free_port, namespace, wait_for, write_yaml
from idp import localhost_names, start_provider
from test_proxy import (allow, call, credential, echoed, fetch_token, route, route_condition,
                        secret_data)

pytestmark = pytest.mark.people

NS = "e2e-idp-secret"
SECRET = "portcullis-idp"


@pytest.fixture(scope="module")
def setup(request, portcullis_bin, kubectl_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("idp-secret")
    request.node._portcullis_servers = []
    dev = provider = None
    for attempt in range(3):
        port = free_port()
        provider = start_provider(work, name=f"idp-secret{attempt + 1}",
                                  redirect_uris=[f"http://localhost:{port}/oauth2/callback"])
        config = write_yaml(work / f"portcullis-{attempt}.yaml", {
            "authenticateURL": f"http://localhost:{port}",
            "idp": {"issuer": provider.issuer, "clientID": provider.client_id,
                    "clientSecretRef": {"name": SECRET, "key": "client_secret"},
                    "scopes": ["openid", "email"]},
        })
        dev = DevServer(binary=portcullis_bin, kubectl_bin=kubectl_bin, data_dir=work / f"data-{attempt}",
                        work_dir=work, extra_args=["--config", str(config)], name=f"idp-secret{attempt + 1}",
                        http_addr=f"127.0.0.1:{port}")
        request.node._portcullis_servers.append(dev)
        try:
            dev.start()
            break
        except ServerExited as exc:
            provider.stop()
            if attempt < 2 and "in use" in str(exc).lower():
                continue
            raise
    assert dev is not None and provider is not None
    echo = dev.echo_url
    dev.apply_docs(
        namespace(NS),
        route(NS, "people", "http://people.localhost", echo,
              policy={"allow": {"or": [{"email": {"is": "alice@example.com"}},
                                       {"serviceAccount": {"is": f"{NS}/bot"}}]}}),
        route(NS, "machines", "http://machines.localhost", echo, policy=allow(f"{NS}/bot")),
        credential(NS, "bot"),
    )
    yield dev, provider, port
    dev.stop(timeout=15)
    provider.stop()
    if m := re.search(r"panicked at .*", dev.stderr_text()):
        pytest.fail(f"portcullis panicked: {m.group(0)}", pytrace=False)


def test_a_missing_idp_secret_fails_only_sign_in_and_recovers_when_it_appears(setup):
    dev, provider, port = setup
    cond = route_condition(dev, NS, "people", "ResolvedRefs", "False")
    assert cond["reason"] == "IdentityProviderUnavailable", cond
    assert SECRET in cond["message"], cond
    assert provider.client_secret not in cond["message"]
    ready = route_condition(dev, NS, "people", "Ready", "True")
    assert ready["reason"] == "ReadyWithUnresolvedRefs", ready
    route_condition(dev, NS, "machines", "ResolvedRefs", "True")

    # Machine-to-machine access is unaffected, on both routes.
    token = fetch_token(dev, secret_data(dev, NS, "bot"))
    echoed(call(dev, "people.localhost", "/m2m", token=token), "token on the people route")
    echoed(call(dev, "machines.localhost", "/m2m", token=token), "token on the machines route")

    # A browser is sent to sign in, and sign-in says it is unavailable: 503, not 500.
    with localhost_names():
        r = requests.get(f"http://people.localhost:{port}/x", headers={"Accept": "text/html"},
                         allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text[:300]
        location = r.headers["Location"]
        assert location.startswith(f"http://localhost:{port}/.portcullis/sign_in?"), location
        r = requests.get(location, allow_redirects=False, timeout=10)
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("text/html")

    # The Secret appears: the condition clears and sign-in goes to the provider.
    dev.kubectl("create", "secret", "generic", SECRET, "-n", "portcullis-system",
                f"--from-literal=client_secret={provider.client_secret}")
    # The provider is retried with a backoff of at most 30 s.
    def resolved():
        obj = dev.get_json("route", "people", "-n", NS)
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return conds.get("ResolvedRefs", {}).get("status") == "True"

    wait_for(resolved, 60, what="ResolvedRefs=True once the Secret exists")
    with localhost_names():
        def goes_to_provider():
            r = requests.get(location, allow_redirects=False, timeout=10)
            return r.status_code == 302 and urlsplit(r.headers["Location"]).netloc == urlsplit(provider.issuer).netloc

        wait_for(goes_to_provider, 45, what="sign-in redirects to the provider")
    assert provider.client_secret not in dev.stderr_text()
