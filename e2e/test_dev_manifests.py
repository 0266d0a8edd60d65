"""`portcullis dev --manifests DIR` (DESIGN §2): every *.yaml/*.yml/*.json under DIR is applied at
start and whenever it changes; objects whose file or document goes away are deleted; broken files
are logged and skipped; objects created by other means are never pruned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DevServer, configmap, namespace, wait_for, write_yaml

LABEL = "portcullis.dev/dev-manifest"
ANNOTATION = "portcullis.dev/manifest-file"
NS = "e2e-m"
BROKEN = "kind: ConfigMap\nmetadata:\n  name: [unclosed\n   data: {: :\n"


def get(dev: DevServer, name: str, ns: str = NS) -> dict | None:
    """The ConfigMap as JSON, or None when it does not exist (over the raw API: no kubectl noise)."""
    r = dev.api("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.json()


def wait_gone(dev: DevServer, name: str, ns: str = NS, timeout: float = 30):
    wait_for(lambda: get(dev, name, ns) is None, timeout, what=f"configmap {ns}/{name} to be pruned")


def wait_data(dev: DevServer, name: str, data: dict, ns: str = NS, timeout: float = 30) -> dict:
    def check():
        o = get(dev, name, ns)
        assert o is not None, "it does not exist"
        assert o.get("data") == data, f"it has data {o.get('data')}"
        return o

    return wait_for(check, timeout, what=f"configmap {ns}/{name} with data {data}")


@pytest.fixture
def mdir(tmp_path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    write_yaml(d / "base.yaml", namespace(NS), configmap("cm-a", {"v": "1"}, namespace=NS))
    write_yaml(d / "multi.yml", configmap("cm-b", {"v": "b"}, namespace=NS),
               configmap("cm-c", {"v": "c"}, namespace=NS))
    (d / "extra.json").write_text(json.dumps(configmap("cm-json", {"v": "json"}, namespace=NS)))
    write_yaml(d / "sub" / "nested.yaml", configmap("cm-nested", {"v": "n"}, namespace=NS))
    (d / "broken.yaml").write_text(BROKEN)
    (d / "README.md").write_text("# not a manifest: {{{ [[[\n")
    return d


@pytest.fixture
def mdev(dev_factory, mdir) -> DevServer:
    dev = dev_factory(manifests=[mdir]).start()
    for name in ("cm-a", "cm-b", "cm-c", "cm-json", "cm-nested"):
        wait_for(lambda: get(dev, name) is not None, 30, what=f"manifest configmap {name} to be applied")
    return dev


def test_manifests_applied_at_start_and_broken_file_skipped(mdev, mdir):
    ns = mdev.get_json("namespace", NS)
    assert ns["metadata"]["labels"].get(LABEL) == "true", ns["metadata"]
    assert ns["metadata"]["annotations"].get(ANNOTATION) == str((mdir / "base.yaml").resolve()), ns["metadata"]
    for name, file, data in (("cm-a", "base.yaml", {"v": "1"}), ("cm-b", "multi.yml", {"v": "b"}),
                             ("cm-c", "multi.yml", {"v": "c"}), ("cm-json", "extra.json", {"v": "json"}),
                             ("cm-nested", "sub/nested.yaml", {"v": "n"})):
        o = get(mdev, name)
        assert o["data"] == data, o
        assert o["metadata"]["labels"].get(LABEL) == "true", o["metadata"]
        assert o["metadata"]["annotations"].get(ANNOTATION) == str((mdir / file).resolve()), o["metadata"]
    # kubectl sees them too, by label
    names = mdev.kubectl("get", "cm", "-n", NS, "-l", f"{LABEL}=true", "-o", "name").stdout.split()
    assert sorted(names) == sorted(f"configmap/{n}" for n in ("cm-a", "cm-b", "cm-c", "cm-json", "cm-nested"))
    # the broken file is reported, by name, and did not stop the server
    wait_for(lambda: "broken.yaml" in mdev.stderr_text(), 30, what="stderr to name broken.yaml")
    assert mdev.running()
    assert mdev.admin_get("/readyz")[0] == 200
    assert "README.md" not in mdev.stderr_text(), "a non-manifest file was treated as a manifest"

    # fixing the broken file applies it
    write_yaml(mdir / "broken.yaml", configmap("cm-fixed", {"v": "fixed"}, namespace=NS))
    wait_data(mdev, "cm-fixed", {"v": "fixed"})


def test_edit_is_applied(mdev, mdir):
    before = get(mdev, "cm-a")
    write_yaml(mdir / "base.yaml", namespace(NS), configmap("cm-a", {"v": "2", "new": "key"}, namespace=NS,
                                                           labels={"team": "e2e"}))
    after = wait_data(mdev, "cm-a", {"v": "2", "new": "key"})
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "an edit must update, not re-create"
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["metadata"]["labels"].get("team") == "e2e"
    assert after["metadata"]["labels"].get(LABEL) == "true"
    # removing a key in the file removes it from the object
    write_yaml(mdir / "base.yaml", namespace(NS), configmap("cm-a", {"v": "3"}, namespace=NS))
    after = wait_data(mdev, "cm-a", {"v": "3"})
    assert "team" not in after["metadata"].get("labels", {}), after["metadata"]
    # and kubectl sees the current content
    assert mdev.kubectl("get", "cm", "cm-a", "-n", NS, "-o", "jsonpath={.data.v}").stdout == "3"


def test_removed_document_is_pruned(mdev, mdir):
    b = get(mdev, "cm-b")
    write_yaml(mdir / "multi.yml", configmap("cm-b", {"v": "b"}, namespace=NS))
    wait_gone(mdev, "cm-c")
    b2 = get(mdev, "cm-b")
    assert b2 is not None and b2["metadata"]["uid"] == b["metadata"]["uid"], "the remaining document was touched"
    cp = mdev.kubectl_fails("get", "cm", "cm-c", "-n", NS)
    assert "NotFound" in cp.stderr


def test_deleted_file_is_pruned(mdev, mdir):
    (mdir / "multi.yml").unlink()
    wait_gone(mdev, "cm-b")
    wait_gone(mdev, "cm-c")
    (mdir / "sub" / "nested.yaml").unlink()
    wait_gone(mdev, "cm-nested")
    # other files' objects stay
    for name in ("cm-a", "cm-json"):
        assert get(mdev, name) is not None, f"{name} was pruned with another file"
    assert mdev.exists("namespace", NS)


def test_broken_edit_keeps_the_files_objects(mdev, mdir):
    """A file saved half-written is skipped: what it applied before stays as it was."""
    a = get(mdev, "cm-a")
    offset = len(mdev.stderr_text())
    (mdir / "base.yaml").write_text(BROKEN)
    wait_for(lambda: "base.yaml" in mdev.stderr_text()[offset:], 30, what="stderr to report base.yaml as broken")
    # barrier: a later change elsewhere is applied, so the loader has passed the broken file again
    (mdir / "extra.json").write_text(json.dumps(configmap("cm-json", {"v": "json2"}, namespace=NS)))
    wait_data(mdev, "cm-json", {"v": "json2"})
    a2 = get(mdev, "cm-a")
    assert a2 is not None, "the objects of a broken file were deleted"
    assert a2["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"], a2
    assert mdev.exists("namespace", NS)
    assert mdev.running()
    write_yaml(mdir / "base.yaml", namespace(NS), configmap("cm-a", {"v": "after-fix"}, namespace=NS))
    wait_data(mdev, "cm-a", {"v": "after-fix"})


def test_objects_not_from_files_are_never_pruned(mdev, mdir):
    mdev.apply_docs(configmap("by-kubectl", {"who": "me"}, namespace=NS))
    mdev.apply_docs(configmap("by-kubectl-default", {"who": "me"}))
    mine = get(mdev, "by-kubectl")
    mine_default = get(mdev, "by-kubectl-default", ns="default")
    # prune a document, a whole file and a nested file
    write_yaml(mdir / "multi.yml", configmap("cm-b", {"v": "b"}, namespace=NS))
    (mdir / "extra.json").unlink()
    (mdir / "sub" / "nested.yaml").unlink()
    for name in ("cm-c", "cm-json", "cm-nested"):
        wait_gone(mdev, name)
    # and an edit of the file in the same namespace
    write_yaml(mdir / "base.yaml", namespace(NS), configmap("cm-a", {"v": "edited"}, namespace=NS))
    wait_data(mdev, "cm-a", {"v": "edited"})
    now = get(mdev, "by-kubectl")
    assert now is not None, "pruning deleted an object created with kubectl"
    assert now["metadata"]["resourceVersion"] == mine["metadata"]["resourceVersion"], now
    assert LABEL not in now["metadata"].get("labels", {})
    now_d = get(mdev, "by-kubectl-default", ns="default")
    assert now_d is not None and now_d["metadata"]["resourceVersion"] == mine_default["metadata"]["resourceVersion"]


def test_file_removed_while_stopped_is_pruned_at_start(dev_factory, mdir, tmp_path):
    data = tmp_path / "data"
    first = dev_factory(data_dir=data, manifests=[mdir], name="first").start()
    for name in ("cm-a", "cm-b", "cm-c"):
        wait_for(lambda: get(first, name) is not None, 30, what=f"{name} applied")
    first.apply_docs(configmap("by-kubectl", {"who": "me"}, namespace=NS))
    a = get(first, "cm-a")
    mine = get(first, "by-kubectl")
    assert first.stop() == 0

    (mdir / "multi.yml").unlink()
    second = dev_factory(data_dir=data, manifests=[mdir], name="second").start()
    wait_gone(second, "cm-b")
    wait_gone(second, "cm-c")
    a2 = get(second, "cm-a")
    assert a2 is not None and a2["metadata"]["uid"] == a["metadata"]["uid"], \
        f"cm-a should have survived the restart unchanged: before {a['metadata']}, after {a2 and a2['metadata']}"
    mine2 = get(second, "by-kubectl")
    assert mine2 is not None, "an object created with kubectl was pruned at start"
    assert mine2["metadata"]["uid"] == mine["metadata"]["uid"]
