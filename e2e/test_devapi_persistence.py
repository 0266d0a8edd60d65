"""Durability of the embedded dev API's data dir (DESIGN §5): acknowledged writes survive `kill -9`,
a clean shutdown exits 0 and keeps everything, `resourceVersion` keeps rising across restarts, and
a corrupted store is reported instead of silently starting with missing data."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from conftest import DevServer, configmap, install_widget_crd, namespace, widget

CORRUPTION_WORDS = re.compile(r"corrupt|checksum|crc|integrity|damaged|invalid (record|entry|frame|data)", re.I)


def snapshot(dev: DevServer) -> dict:
    """{(kind, ns, name): (uid, creationTimestamp, payload)} of the test's objects (whatever exists),
    plus the highest resourceVersion seen (objects and the store's current list revision)."""
    out = {}
    rv = 0
    sources = (
        ("Namespace", "/api/v1/namespaces/e2e-persist"),
        ("ConfigMap", "/api/v1/namespaces/e2e-persist/configmaps"),
        ("Widget", "/apis/example.com/v1/namespaces/e2e-persist/widgets"),
    )
    for kind, path in sources:
        r = dev.api("GET", path)
        if r.status == 404:
            continue  # gone: assert_same names what is missing
        assert r.status == 200, f"GET {path}: {r}"
        doc = r.json()
        if "items" in doc:
            items = doc["items"]
            rv = max(rv, int(doc["metadata"]["resourceVersion"]))
        else:
            items = [doc]
        for o in items:
            m = o["metadata"]
            rv = max(rv, int(m["resourceVersion"]))
            payload = {k: o.get(k) for k in ("data", "spec", "status") if k in o}
            payload["labels"] = m.get("labels")
            out[(kind, m.get("namespace"), m["name"])] = (m["uid"], m["creationTimestamp"],
                                                          json.dumps(payload, sort_keys=True))
    return {"objects": out, "rv": rv}


def populate(dev: DevServer) -> None:
    install_widget_crd(dev)
    dev.apply_docs(namespace("e2e-persist"))
    dev.apply_docs(
        configmap("one", {"k": "1"}, namespace="e2e-persist", labels={"app": "p"}),
        configmap("two", {"k": "2", "multi": "a\nb\n"}, namespace="e2e-persist"),
        widget("w", 4, "blue", namespace="e2e-persist", labels={"tier": "gold"}),
    )
    # an update, a delete and a status write, so more than creations must be replayed
    dev.kubectl("patch", "cm", "one", "-n", "e2e-persist", "--type=merge", "-p", '{"data":{"k":"1b"}}')
    dev.create_docs(configmap("gone", {"k": "x"}, namespace="e2e-persist"))
    dev.kubectl("delete", "cm", "gone", "-n", "e2e-persist")
    dev.kubectl("patch", "widget", "w", "-n", "e2e-persist", "--subresource=status", "--type=merge",
                "-p", '{"status":{"phase":"Ready"}}')


def assert_same(before: dict, after: dict):
    b, a = before["objects"], after["objects"]
    assert set(a) == set(b), f"objects differ after restart: missing {set(b) - set(a)}, unexpected {set(a) - set(b)}"
    for key in b:
        assert a[key] == b[key], f"{key} changed across the restart:\nbefore {b[key]}\nafter  {a[key]}"


def rv_of_new_write(dev: DevServer, name: str) -> int:
    out = dev.create_docs(configmap(name, {"after": "restart"}, namespace="e2e-persist"))
    assert f"configmap/{name} created" in out.stdout
    return int(dev.get_json("cm", name, "-n", "e2e-persist")["metadata"]["resourceVersion"])


def test_acknowledged_writes_survive_kill_9(dev_factory, tmp_path):
    data = tmp_path / "data"
    first = dev_factory(data_dir=data, name="before-kill").start()
    populate(first)
    before = snapshot(first)
    assert len(before["objects"]) == 4, before
    # the very last acknowledged write, immediately followed by SIGKILL
    first.kubectl("label", "cm", "two", "-n", "e2e-persist", "last=write")
    before = snapshot(first)
    code = first.kill9()
    assert code == -signal.SIGKILL

    second = dev_factory(data_dir=data, name="after-kill").start()
    after = snapshot(second)
    assert_same(before, after)
    assert dict(json.loads(after["objects"][("ConfigMap", "e2e-persist", "two")][2]))["labels"] == {"last": "write"}
    assert json.loads(after["objects"][("ConfigMap", "e2e-persist", "one")][2])["data"] == {"k": "1b"}
    assert json.loads(after["objects"][("Widget", "e2e-persist", "w")][2])["status"] == {"phase": "Ready"}
    assert not second.exists("cm", "gone", "-n", "e2e-persist"), "a deleted object came back after kill -9"
    new_rv = rv_of_new_write(second, "fresh")
    assert new_rv > before["rv"], f"resourceVersion went backwards after kill -9: {new_rv} <= {before['rv']}"
    # the CRD survived too, with its kind still served
    assert second.kubectl("get", "crd", "widgets.example.com", "-o", "name").stdout.strip() == \
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clean_shutdown_exits_0_and_keeps_data(dev_factory, tmp_path, sig):
    data = tmp_path / "data"
    first = dev_factory(data_dir=data, name="first").start()
    populate(first)
    before = snapshot(first)
    code = first.stop(sig)
    assert code == 0, f"`portcullis dev` exited {code} on {sig.name}\n{first.stderr_tail()}"

    second = dev_factory(data_dir=data, name="second").start()
    assert_same(before, snapshot(second))
    new_rv = rv_of_new_write(second, "fresh")
    assert new_rv > before["rv"], f"resourceVersion did not keep rising: {new_rv} <= {before['rv']}"
    # ... and the same kubeconfig (CA, token) keeps working across restarts
    assert second.kubeconfig == first.kubeconfig
    assert second.token() == first.token()
    # a third generation still sees everything, including the write made by the second
    assert second.stop() == 0
    third = dev_factory(data_dir=data, name="third").start()
    assert third.get_json("cm", "fresh", "-n", "e2e-persist")["data"] == {"after": "restart"}
    assert int(third.get_json("cm", "fresh", "-n", "e2e-persist")["metadata"]["resourceVersion"]) == new_rv


def store_files(data: Path) -> list[Path]:
    store = data / "store"
    assert store.is_dir(), f"no store directory at {store}; the data dir holds: " + \
        ", ".join(str(p.relative_to(data)) for p in sorted(data.rglob("*")))
    files = [p for p in store.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert files, f"no non-empty files under {store}: {sorted(store.rglob('*'))}"
    return files


def test_corrupted_store_is_reported_not_ignored(dev_factory, tmp_path):
    data = tmp_path / "data"
    first = dev_factory(data_dir=data, name="healthy").start()
    populate(first)
    # enough payload that the middle of the largest file is object data
    first.apply_docs(*[configmap(f"bulk-{i}", {"blob": f"{i}-" + "z" * 4000}, namespace="e2e-persist")
                       for i in range(20)])
    assert first.stop() == 0

    files = store_files(data)
    victim = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    mid = len(raw) // 2
    raw[mid] ^= 0xFF
    victim.write_bytes(bytes(raw))

    second = dev_factory(data_dir=data, name="corrupted").spawn()
    code = second.wait_exit(timeout=60)
    err = second.stderr_text()
    assert code != 0, (f"started (exit {code}) on a store with a flipped byte at offset {mid} of {victim}\n{err}")
    assert CORRUPTION_WORDS.search(err), f"exit {code}, but stderr does not mention corruption:\n{err}"
    # and it did not get as far as serving
    assert not any(l.startswith("export KUBECONFIG=") for l in second.stdout_lines), second.stdout_lines
