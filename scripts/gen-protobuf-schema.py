#!/usr/bin/env python3
"""Generates host/model/src/protobuf/schema.rs: the Kubernetes protobuf messages and their JSON names.

Field tags and wire types come from the prost-generated `k8s-pb` crate, JSON field names (and the
API version/kind of each resource) from `k8s-openapi`'s serde impls. Stdlib only.

    python3 scripts/gen-protobuf-schema.py            # finds both crates in ~/.cargo/registry
    python3 scripts/gen-protobuf-schema.py --pb DIR --openapi DIR --out FILE
"""

import argparse
import glob
import os
import re
import sys

PB_VERSION = "0.9.0"
OPENAPI_VERSION = "0.24.0"
OPENAPI_FEATURE = "v1_32"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "host/model/src/protobuf/schema.rs")

# Go package segments whose Rust module name differs (`-` is not allowed in Rust).
PACKAGE_SEGMENTS = {
    "apiextensions_apiserver": "apiextensions-apiserver",
    "kube_aggregator": "kube-aggregator",
}
# Packages left out: test fixtures, and read-only metrics APIs (never a request body).
SKIP_PREFIXES = [("apimachinery", "pkg", "apis", "testapigroup"), ("metrics",)]
# Wrapper messages (lowercased: v1beta1 keeps prost's spelling) the decoder turns into non-object
# JSON; it reads their fields by these names.
FIXED_NAMES = {
    "jsonschemapropsorarray": {"schema": "schema", "j_son_schemas": "jSONSchemas"},
    "jsonschemapropsorbool": {"allows": "allows", "schema": "schema"},
    "jsonschemapropsorstringarray": {"schema": "schema", "property": "property"},
}
SCALARS = {
    "string": "Str",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "double": "F64",
    "bytes": "Bytes",
}

PROST_ATTR = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
STRUCT_START = re.compile(r"^pub struct (\w+) \{(\})?\s*$")
FIELD_START = re.compile(r"^\s*pub (?:r#)?(\w+):\s*(.*)$")
OPENAPI_KEY = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),\s*$')
OPENAPI_TYPE = re.compile(r"^pub (?:struct|enum) (\w+)")
RESOURCE_IMPL = re.compile(
    r"impl crate::Resource for (\w+) \{\s*"
    r'const API_VERSION: &\'static str = "([^"]*)";\s*'
    r'const GROUP: &\'static str = "[^"]*";\s*'
    r'const KIND: &\'static str = "([^"]*)";',
)
RESOURCE_IMPL_PB = re.compile(
    r"impl crate::Resource for (\w+) \{\s*"
    r'const API_VERSION: &\'static str = "([^"]*)";\s*'
    r'const GROUP: &\'static str = "[^"]*";\s*'
    r'const VERSION: &\'static str = "[^"]*";\s*'
    r'const KIND: &\'static str = "([^"]*)";',
)


def find_crate(name, version):
    pattern = os.path.expanduser(f"~/.cargo/registry/src/*/{name}-{version}/src")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"{name} {version} not found ({pattern}); run `cargo fetch` first")
    return found[0]


def module_of(root, path):
    rel = os.path.relpath(os.path.dirname(path), root)
    return tuple(rel.split(os.sep))


def package(module):
    return "k8s.io." + ".".join(PACKAGE_SEGMENTS.get(s, s) for s in module)


def squash(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def go_json_name(word):
    """A Go field name (doc comments start with it) as Kubernetes spells it in JSON: `HTTPGet` -> `httpGet`."""
    upper = len(word) - len(word.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if upper == len(word) or word[upper:] == "s":
        return word.lower()
    if upper > 1:
        upper -= 1
    return word[:upper].lower() + word[upper:]


def resolve(module, ty):
    """Resolves a (whitespace-free) prost type path to (module, type name)."""
    parts = ty.split("::")
    mod = list(module)
    while parts[0] == "super":
        mod.pop()
        parts.pop(0)
    return tuple(mod + parts[:-1]), parts[-1]


def strip_wrappers(ty):
    ty = re.sub(r"\s+", "", ty).rstrip(",").replace(",>", ">")
    for wrapper in (
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ):
        while ty.startswith(wrapper):
            ty = ty[len(wrapper) : -1]
    return ty


def parse_pb(root):
    """Returns {(module, rust struct name): [field dict]} in source order."""
    messages = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = module_of(root, path)
        if module == (".",) or any(module[: len(p)] == p for p in SKIP_PREFIXES):
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        current = None
        docs = []
        attr = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = STRUCT_START.match(line)
            if m:
                current = []
                messages[(module, m.group(1))] = current
                if m.group(2):
                    current = None
                docs, attr = [], None
            elif line == "}":
                current = None
            elif current is not None:
                stripped = line.strip()
                if stripped.startswith("///"):
                    docs.append(stripped[3:].strip())
                elif PROST_ATTR.match(line):
                    attr = PROST_ATTR.match(line).group(1)
                elif FIELD_START.match(line) and attr is not None:
                    name, ty = FIELD_START.match(line).groups()
                    # Types rustfmt split over lines end with `,` outside any `<>`.
                    while not ty.rstrip().endswith(",") or ty.count("<") != ty.count(">"):
                        i += 1
                        ty += lines[i].strip()
                    current.append(field(module, name, ty, attr, docs))
                    docs, attr = [], None
            i += 1
    return messages


def field(module, name, ty, attr, docs):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    first_doc_word = docs[0].split(" ")[0] if docs else ""
    out = {"name": name, "tag": tag, "doc_word": first_doc_word, "repeated": False}
    m = re.match(r'btree_map = "string, (\w+)"', attr)
    if m:
        value = m.group(1)
        out["map"] = True
        if value == "message":
            inner = re.sub(r"\s+", "", ty).rstrip(",").replace(",>", ">")
            inner = inner[inner.index(",") + 1 : -1]
            out["kind"] = ("message", resolve(module, inner))
        else:
            out["kind"] = ("scalar", value)
        return out
    out["map"] = False
    kind = attr.split(",")[0].strip()
    kind = kind.split(" ")[0]
    out["repeated"] = "repeated" in attr
    if kind == "message":
        out["kind"] = ("message", resolve(module, strip_wrappers(ty)))
    elif kind in SCALARS:
        out["kind"] = ("scalar", kind)
    else:
        sys.exit(f"unsupported prost attribute {attr!r} on {name}")
    return out


def parse_openapi(root):
    """Returns ({(module, lowercased type): (type name, {rust field: json})}, [(apiVersion, kind, module, type)])."""
    types = {}
    resources = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rs"), recursive=True)):
        module = module_of(root, path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        names = [m.group(1) for line in text.split("\n") if (m := OPENAPI_TYPE.match(line))]
        if not names:
            continue
        keys = {}
        for line in text.split("\n"):
            m = OPENAPI_KEY.match(line)
            if m:
                keys[m.group(2).rstrip("_")] = m.group(1)
        types[(module, names[0].lower())] = (names[0], keys)
        for m in RESOURCE_IMPL.finditer(text):
            resources.append((m.group(2), m.group(3), module, m.group(1).lower()))
    return types, resources


def parse_pb_resources(root):
    resources = []
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = module_of(root, path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in RESOURCE_IMPL_PB.finditer(text):
            resources.append((m.group(2), m.group(3), module, m.group(1).lower()))
    return resources


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pb", help="k8s-pb src directory")
    parser.add_argument("--openapi", help=f"k8s-openapi src/{OPENAPI_FEATURE} directory")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    pb_root = args.pb or find_crate("k8s-pb", PB_VERSION)
    openapi_root = args.openapi or os.path.join(
        find_crate("k8s-openapi", OPENAPI_VERSION), OPENAPI_FEATURE
    )

    pb = parse_pb(pb_root)
    openapi, resources = parse_openapi(openapi_root)
    resources += parse_pb_resources(pb_root)

    # Proto message names: k8s-openapi keeps the Go (= proto) spelling that prost CamelCases away.
    full_names = {}
    for (module, rust), _ in pb.items():
        found = openapi.get((module, rust.lower()))
        full_names[(module, rust)] = package(module) + "." + (found[0] if found else rust)
    by_lower = {(m, r.lower()): n for (m, r), n in full_names.items()}

    # Messages with no k8s-openapi type of their own (ProbeHandler, ...) exist only inlined: their
    # JSON names are the parents'.
    inlined_into = {}
    for (module, rust), fields in pb.items():
        keys = openapi.get((module, rust.lower()), (None, {}))[1]
        for f in fields:
            if keys and f["name"] not in keys and is_inline(f, keys, pb, openapi):
                child = full_names[f["kind"][1]]
                inlined_into.setdefault(child, {}).update({squash(j): j for j in keys.values()})

    guessed = []
    tables = {}
    for (module, rust), fields in pb.items():
        name = full_names[(module, rust)]
        found = openapi.get((module, rust.lower()))
        keys = found[1] if found else {}
        short = name.rsplit(".", 1)[1]
        squashed_keys = {squash(j): j for j in keys.values()}
        rows = []
        for f in fields:
            if short.lower() in FIXED_NAMES:
                json = FIXED_NAMES[short.lower()][f["name"]]
            elif f["name"] in keys:
                json = keys[f["name"]]
            elif squash(f["name"]) in squashed_keys:
                json = squashed_keys[squash(f["name"])]
            elif found and keys and is_inline(f, keys, pb, openapi):
                json = ""
            else:
                word = f["doc_word"]
                json = inlined_into.get(name, {}).get(squash(f["name"]))
                if json is None:
                    json = go_json_name(word) if squash(word) == squash(f["name"]) else lower_camel(f["name"])
                if keys:
                    guessed.append(f"{name}.{f['name']} -> {json}")
            rows.append((f["tag"], json, wire_kind(f, by_lower), f["repeated"]))
        tables[name] = sorted(rows)

    kinds = {}
    for api_version, kind, module, lower in resources:
        message = by_lower.get((module, lower))
        if message is not None:
            kinds[(api_version, kind)] = message

    for line in guessed:
        print(f"guessed JSON name (not in k8s-openapi {OPENAPI_FEATURE}): {line}", file=sys.stderr)
    write(args.out, tables, kinds)
    print(f"wrote {args.out}: {len(tables)} messages, {len(kinds)} kinds", file=sys.stderr)


def is_inline(f, keys, pb, openapi):
    """A message field whose own fields (mostly) appear in the parent's JSON is Go's `json:",inline"`."""
    if f["kind"][0] != "message" or f["repeated"] or f["map"]:
        return False
    child = flat_names(f["kind"][1], pb, openapi)
    parent = {squash(j) for j in keys.values()}
    return sum(c in parent for c in child) * 2 > len(child)


def flat_names(message, pb, openapi):
    """The squashed JSON names a message contributes when inlined (nested inlines expanded)."""
    keys = openapi.get((message[0], message[1].lower()), (None, {}))[1]
    known = {squash(j) for j in keys.values()}
    names = []
    for f in pb.get(message, []):
        if squash(f["name"]) in known or f["name"] in keys:
            names.append(squash(f["name"]))
        elif keys and is_inline(f, keys, pb, openapi):
            names += flat_names(f["kind"][1], pb, openapi)
        else:
            names.append(squash(f["name"]))
    return names


def wire_kind(f, by_lower):
    kind, what = f["kind"]
    if kind == "message":
        module, rust = what
        target = by_lower.get((module, rust.lower()))
        if target is None:
            sys.exit(f"unresolved message type {what} of field {f['name']}")
        return f'MapMsg("{target}")' if f["map"] else f'Msg("{target}")'
    if f["map"]:
        if what == "string":
            return "MapStr"
        if what == "bytes":
            return "MapBytes"
        sys.exit(f"unsupported map value {what}")
    return SCALARS[what]


def write(out, tables, kinds):
    lines = [
        "//! Generated by scripts/gen-protobuf-schema.py from k8s-pb and k8s-openapi; do not edit.",
        "//",
        "// Regenerate with `python3 scripts/gen-protobuf-schema.py` (output is rustfmt-clean).",
        "",
        "use super::Field;",
        "use super::Ty::*;",
        "",
        "const fn one(tag: u32, json: &'static str, ty: super::Ty) -> Field {",
        "    Field {",
        "        tag,",
        "        json,",
        "        ty,",
        "        repeated: false,",
        "    }",
        "}",
        "",
        "const fn rep(tag: u32, json: &'static str, ty: super::Ty) -> Field {",
        "    Field {",
        "        tag,",
        "        json,",
        "        ty,",
        "        repeated: true,",
        "    }",
        "}",
        "",
        "/// Every message by full proto name (sorted), with its fields by tag (sorted). A field with",
        '/// an empty JSON name is inlined into its parent (Go\'s `json:",inline"`).',
        "#[rustfmt::skip]",
        "pub(super) static MESSAGES: &[(&str, &[Field])] = &[",
    ]
    for name in sorted(tables):
        rows = tables[name]
        if not rows:
            lines.append(f'    ("{name}", &[]),')
            continue
        lines.append(f'    ("{name}", &[')
        cells = [
            f'{"rep" if repeated else "one"}({tag}, "{json}", {ty}),'
            for tag, json, ty, repeated in rows
        ]
        current = "       "
        for cell in cells:
            if len(current) + 1 + len(cell) > 120 and current.strip():
                lines.append(current)
                current = "       "
            current += " " + cell
        lines.append(current)
        lines.append("    ]),")
    lines.append("];")
    lines.append("")
    lines.append("/// The message of each resource kind, by (apiVersion, kind) (sorted).")
    lines.append("#[rustfmt::skip]")
    lines.append("pub(super) static KINDS: &[(&str, &str, &str)] = &[")
    for (api_version, kind), message in sorted(kinds.items()):
        lines.append(f'    ("{api_version}", "{kind}", "{message}"),')
    lines.append("];")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
