#!/usr/bin/env python3
"""Generate the built-in Kubernetes OpenAPI data embedded by the dev API server.

`src/devapi/builtin_schema.rs` embeds the file this script writes. It holds every OpenAPI
definition reachable from a built-in kind (anything carrying `x-kubernetes-group-version-kind`)
with the fields the server needs: types and formats, properties/items/additionalProperties,
`required`, `$ref` (reduced to a bare definition name), descriptions (for `kubectl explain`),
and the list-merge and structural extensions (`x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
`x-kubernetes-map-type`, `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`,
`x-kubernetes-embedded-resource`). k8s-openapi does not carry that metadata, which is why the
strategic merge patch and the OpenAPI v3 documents read it from here.

Source: the PyPI package `kubernetes-validate` (version pinned below), file
`kubernetes_validate/kubernetes-json-schema/v1.35.0-local/_definitions.json`. That file is the
upstream `swagger.json` run through openapi2jsonschema, which changed a few things that this
script undoes:

* `"type": ["string", "null"]` (nullable everything) becomes `"type": "string"`;
* the `enum` it injected on `apiVersion`/`kind` of every kind is dropped (upstream has none);
* `IntOrString` (turned into a bare `oneOf`) gets back `format: int-or-string` and is marked
  `x-kubernetes-int-or-string: true`; `Quantity` keeps its `oneOf` of string/number, as in
  upstream OpenAPI v3;
* `$ref: "#/$defs/<name>"` becomes `$ref: "<name>"`.

Output: one JSON object, keys sorted, one definition per line so diffs stay readable:

    {"definitions":{
    "<name>":{...},
    ...
    },"source":"..."}

Plain JSON (about 1 MB) rather than gzip: it is under the 2 MB budget, diffs well and needs no
decompressor at startup.

Regenerate (from the repository root):

    python3.11 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate==1.37.0
    /tmp/kv/bin/python scripts/gen-builtin-openapi.py          # rewrites the data file
    /tmp/kv/bin/python scripts/gen-builtin-openapi.py --check  # CI: fail if it drifted

`--source DIR` reads an unpacked `v1.35.0-local` directory instead of the installed package
(for example from `pip download kubernetes-validate==1.37.0` + unzip). Only the standard
library is used; the package is read as data, never imported.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

PACKAGE = "kubernetes-validate"
PACKAGE_VERSION = "1.37.0"
KUBERNETES_VERSION = "v1.35.0"
SCHEMA_DIR = f"kubernetes-json-schema/{KUBERNETES_VERSION}-local"
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "src/devapi/data/builtin-openapi-v1.35.json"
)

# Schema keywords kept as they are (after recursive cleaning where they hold schemas).
KEPT = {
    "type",
    "format",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "$ref",
    "description",
    "enum",
    "oneOf",
    "x-kubernetes-group-version-kind",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
}
REF_PREFIX = "#/$defs/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def fail(msg: str) -> None:
    print(f"gen-builtin-openapi: {msg}", file=sys.stderr)
    sys.exit(1)


ORIGIN = f"{PACKAGE} {PACKAGE_VERSION}: kubernetes_validate/{SCHEMA_DIR}/_definitions.json"


def locate_source(explicit: str | None) -> Path:
    """The `_definitions.json` to read: from `--source`, else from the installed package."""
    if explicit:
        return Path(explicit) / "_definitions.json"
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        fail(f"package {PACKAGE} is not installed; pip install {PACKAGE}=={PACKAGE_VERSION}")
    version = importlib.metadata.version(PACKAGE)
    if version != PACKAGE_VERSION:
        fail(f"{PACKAGE} {version} installed, this script is pinned to {PACKAGE_VERSION}")
    root = Path(list(spec.submodule_search_locations)[0])
    return root / SCHEMA_DIR / "_definitions.json"


def normalize_type(t):
    """`["string", "null"]` -> `"string"`; a plain string stays."""
    if isinstance(t, list):
        kinds = [x for x in t if x != "null"]
        if len(kinds) == 1:
            return kinds[0]
        return kinds
    return t


def clean(schema, *, drop_enum: bool = False):
    """Keep only the server's keywords; recurse into every place that holds a schema."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key not in KEPT:
            continue
        if key == "type":
            out[key] = normalize_type(value)
        elif key == "$ref":
            if not isinstance(value, str) or not value.startswith(REF_PREFIX):
                fail(f"unexpected $ref {value!r}")
            out[key] = value[len(REF_PREFIX) :]
        elif key == "properties":
            # Property names are data, not keywords: never filter them.
            out[key] = {
                name: clean(prop, drop_enum=name in ("apiVersion", "kind") and drop_enum)
                for name, prop in value.items()
            }
        elif key in ("items", "additionalProperties"):
            out[key] = clean(value)
        elif key == "oneOf":
            out[key] = [clean(v) for v in value]
        elif key == "enum" and drop_enum:
            continue
        else:
            out[key] = value
    return out


def refs(schema):
    """Every definition name a (cleaned) schema refers to."""
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("$ref"), str):
        yield schema["$ref"]
    for prop in (schema.get("properties") or {}).values():
        yield from refs(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from refs(schema[key])
    for sub in schema.get("oneOf") or []:
        yield from refs(sub)


def build(source: Path) -> dict:
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except OSError as err:
        fail(f"cannot read {source}: {err}")
    defs = raw.get("$defs")
    if not isinstance(defs, dict):
        fail(f"{source} has no $defs object")

    cleaned = {}
    for name, schema in defs.items():
        is_kind = "x-kubernetes-group-version-kind" in schema
        cleaned[name] = clean(schema, drop_enum=is_kind)

    ios = cleaned.get(INT_OR_STRING)
    if ios is None:
        fail(f"{INT_OR_STRING} missing")
    ios.pop("oneOf", None)
    ios["format"] = "int-or-string"
    ios["x-kubernetes-int-or-string"] = True

    # Everything reachable from a built-in kind.
    roots = sorted(n for n, s in cleaned.items() if "x-kubernetes-group-version-kind" in s)
    keep, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        if name not in cleaned:
            fail(f"dangling $ref to {name}")
        keep.add(name)
        stack.extend(refs(cleaned[name]))

    # A group/version/kind must name exactly one definition.
    owners = {}
    for name in sorted(keep):
        for gvk in cleaned[name].get("x-kubernetes-group-version-kind", []):
            key = (gvk["group"], gvk["version"], gvk["kind"])
            if key in owners:
                fail(f"{key} claimed by {owners[key]} and {name}")
            owners[key] = name

    return {name: cleaned[name] for name in sorted(keep)}


def render(definitions: dict) -> str:
    def dump(v) -> str:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    lines = [f"{dump(name)}:{dump(schema)}" for name, schema in definitions.items()]
    return (
        '{"definitions":{\n'
        + ",\n".join(lines)
        + "\n},"
        + f'"kubernetesVersion":{dump(KUBERNETES_VERSION)},'
        + f'"source":{dump(ORIGIN)}'
        + "}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", help="unpacked kubernetes-json-schema/v1.35.0-local directory")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="data file to write")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the output file differs from a fresh run"
    )
    args = parser.parse_args()

    text = render(build(locate_source(args.source)))
    json.loads(text)  # the output must itself be valid JSON
    out = Path(args.output)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            fail(f"{out} is out of date; rerun scripts/gen-builtin-openapi.py")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text.encode())} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
