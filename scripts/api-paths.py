#!/usr/bin/env python3
"""Counts the public paths of server-core from its rustdoc JSON: every path a user can name,
following `pub use` re-exports and public modules (doc-hidden items left out). One path per item
is the rule (CONTRIBUTING.md).

    cargo +nightly rustdoc -p server-core --all-features -- -Z unstable-options --output-format json
    scripts/api-paths.py target/doc/server_core.json [--list]
"""
import json, sys
doc = json.load(open(sys.argv[1]))
index = doc["index"]; root = doc["root"]
paths = set(); items = set()
def walk(mod_id, prefix, seen):
    if mod_id in seen: return
    seen = seen | {mod_id}
    m = index[str(mod_id)] if str(mod_id) in index else index.get(mod_id)
    for child in m["inner"]["module"]["items"]:
        it = index.get(str(child)) or index.get(child)
        if it is None: continue
        if it.get("visibility") != "public": continue
        if any("hidden" in str(a) for a in it.get("attrs", [])): continue
        inner = it["inner"]
        if "use" in inner:
            u = inner["use"]
            target = u.get("id")
            if target is None or (str(target) not in index and target not in index): continue
            t = index.get(str(target)) or index.get(target)
            if u["is_glob"]:
                walk(target, prefix, seen); continue
            name = u["name"]
            kind = next(iter(t["inner"]))
            paths.add((prefix + "::" + name, kind)); items.add(target)
            if kind == "module": walk(target, prefix + "::" + name, seen)
            continue
        kind = next(iter(inner))
        if kind in ("impl",): continue
        name = it["name"]
        paths.add((prefix + "::" + name, kind)); items.add(child)
        if kind == "module": walk(child, prefix + "::" + name, seen)
walk(root, "server_core", frozenset())
print(f"{len(paths)} public paths to {len(items)} items")
if "--list" in sys.argv:
    for p, k in sorted(paths): print(f"{k:10} {p}")
