#!/usr/bin/env python3
"""Package.swift tells the truth: each Swift target's declared dependencies are exactly the
modules its files import (MemberImportVisibility makes every file import what it uses, so the
imports are complete). Prints each difference with the target and exits 1; run by `make test`."""
import json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The platform and the toolchain's own modules: not package dependencies.
PLATFORM = {"Foundation", "Glibc", "Darwin", "Musl", "Dispatch", "Synchronization", "Testing", "XCTest"}

manifest = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout)
problems = []
for target in manifest["targets"]:
    if target["type"] == "system":
        continue
    declared = {next(iter(d.values()))[0] for d in target["dependencies"]}
    path = target.get("path") or os.path.join("Tests" if target["type"] == "test" else "Sources", target["name"])
    imported = set()
    for folder, _, files in os.walk(os.path.join(ROOT, path)):
        for name in files:
            if name.endswith(".swift"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    imported |= set(re.findall(r"^\s*(?:@testable\s+)?import\s+(\w+)", f.read(), re.M))
    imported -= PLATFORM
    for module in sorted(imported - declared):
        problems.append(f"{target['name']}: imports {module} but Package.swift does not declare it")
    for module in sorted(declared - imported):
        problems.append(f"{target['name']}: Package.swift declares {module} but no file imports it")
for line in problems:
    print(f"check-imports: {line}")
if problems:
    sys.exit(1)
print(f"check-imports: every target's dependencies equal its imports ({sum(t['type'] != 'system' for t in manifest['targets'])} targets)")
