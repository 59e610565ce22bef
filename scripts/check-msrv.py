#!/usr/bin/env python3
"""Checks the toolchain story against the locked dependencies (issue 11 item 7).

    scripts/check-msrv.py

What holds, and what this checks:

- Each workspace crate's `rust-version` (1.85 for the published library: socketserver,
  server-core, server-derive) covers what it needs to build as a dependency: every normal and
  build dependency in Cargo.lock declares a `rust-version` no newer than the crate's. (Newer std
  APIs in our own code are clippy's `incompatible_msrv`, which reads the same `rust-version`.)
- Building the tests and examples (dev-dependencies: trybuild) needs a newer Rust than the
  library; this prints that version, and checks that the toolchain pinned in
  rust-toolchain.toml (what CI and the UI snapshots use) is at least that.

No Rust older than the pinned one is installed here, so this reads what the dependencies
declare rather than building with 1.85. Exits 1, naming the dependency, when a rule is broken.
"""

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def version(text):
    """'1.85' or '1.85.0' -> (1, 85, 0); None -> (0,)."""
    if not text:
        return (0,)
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(str(p) for p in v[:2]) if v != (0,) else "any"


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.PIPE,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    deps = {n["id"]: n["deps"] for n in meta["resolve"]["nodes"]}

    def closure(roots, dev):
        """Packages reached through normal and build edges (and, if `dev`, the roots'
        dev-dependencies with everything they need)."""
        seen, stack = set(), list(roots)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in deps[pid]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds & {None, "build"} or (dev and pid in roots and "dev" in kinds):
                    stack.append(dep["pkg"])
        return seen

    failed = False
    members = meta["workspace_members"]
    for pid in members:
        crate = packages[pid]
        own = version(crate.get("rust_version"))
        needs = max(
            (version(packages[d].get("rust_version")), packages[d]["name"], packages[d]["version"])
            for d in closure([pid], dev=False)
            if d != pid
        )
        ok = needs[0] <= own
        failed |= not ok
        print(
            f"{'ok ' if ok else 'BAD'} {crate['name']}: rust-version {show(own)}; its dependencies "
            f"need {show(needs[0])} ({needs[1]} {needs[2]})"
        )
        if not ok:
            print(
                f"    {needs[1]} {needs[2]} needs Rust {show(needs[0])}, newer than "
                f"{crate['name']}'s rust-version: pin an older {needs[1]} in Cargo.lock "
                f"(cargo update -p {needs[1]} --precise ...) or raise rust-version"
            )

    toml = (ROOT / "rust-toolchain.toml").read_text()
    pinned = re.search(r'^channel\s*=\s*"([^"]+)"', toml, re.M)
    published = [pid for pid in members if packages[pid]["name"] != "socketserver-bench"]
    dev_needs = max(
        (version(packages[d].get("rust_version")), packages[d]["name"])
        for d in closure(published, dev=True)
    )
    print(f"tests and examples need Rust {show(dev_needs[0])} ({dev_needs[1]})", end="")
    if pinned and re.match(r"^\d", pinned.group(1)):
        pin = version(pinned.group(1))
        ok = dev_needs[0] <= pin
        failed |= not ok
        print(f"; rust-toolchain.toml pins {pinned.group(1)}: {'ok' if ok else 'TOO OLD'}")
    else:
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
