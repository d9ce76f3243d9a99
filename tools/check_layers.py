#!/usr/bin/env python3
"""Checks the layering of lib/ (docs/ARCHITECTURE.md, "Layers"):

  lib/core/  pure C: includes only lib/core/, prescore/types.h,
             prescore/version.h and the C/OpenCL shared headers of cl/;
  lib/ref/   the host reference: lib/core/, lib/ref/, prescore/types.h,
             prescore/prescore_ref.h, prescore/version.h, cl/ shared headers;
  lib/*      the device stages: anything but lib/ref/;

no file of lib/core/ or lib/ref/ includes an OpenCL header, the
includes among lib/ files form no cycle, only lib/settings.c reads the
environment (getenv), and README.md's "Environment" table names every
variable of lib/settings.c's table. Prints every violation; exit
status 1 when there is one.  Usage: check_layers.py [repository root]"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def classify(path):
    parts = path.split(os.sep)
    if parts[0] == "include":
        return "public:" + parts[-1]
    if parts[0] == "cl":
        return "cl"
    if parts[:2] == ["lib", "core"]:
        return "core"
    if parts[:2] == ["lib", "ref"]:
        return "ref"
    return "device"


ALLOWED_PUBLIC = {
    "core": {"public:types.h", "public:version.h"},
    "ref": {"public:types.h", "public:version.h", "public:prescore_ref.h"},
}


def resolve(root, src, name):
    """The repository-relative path an #include "name" of src finds, or None."""
    for base in (os.path.dirname(src), "lib", "include", "cl"):
        cand = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    files = []
    for d, _, names in os.walk(os.path.join(root, "lib")):
        for n in names:
            if n.endswith((".c", ".h")):
                files.append(os.path.relpath(os.path.join(d, n), root))
    problems = []
    graph = {}
    for f in sorted(files):
        layer = classify(f)
        text = open(os.path.join(root, f), encoding="utf-8").read()
        graph[f] = []
        for kind, name in INCLUDE.findall(text):
            if kind == "<":
                if layer in ("core", "ref") and ("CL/" in name or "OpenCL/" in name):
                    problems.append(f"{f}: includes <{name}> (no OpenCL below the device layer)")
                continue
            target = resolve(root, f, name)
            if target is None:
                continue  # generated (cl_sources.h) or a system header in quotes
            tl = classify(target)
            if target.startswith("lib"):
                graph[f].append(target)
            if layer == "core" and tl not in ("core", "cl") and tl not in ALLOWED_PUBLIC["core"]:
                problems.append(f"{f}: core includes {target}")
            if layer == "ref" and tl not in ("core", "ref", "cl") and tl not in ALLOWED_PUBLIC["ref"]:
                problems.append(f"{f}: reference includes {target}")
            if layer == "device" and tl == "ref":
                problems.append(f"{f}: device stage includes the reference {target}")
    # Include cycles among lib/ files (depth-first search).
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                problems.append("include cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for f in sorted(graph):
        if f not in state:
            visit(f, [])
    # One reader of the environment, and every variable documented.
    getenv = re.compile(r"\bgetenv\s*\(")
    for f in sorted(files):
        if f != os.path.join("lib", "settings.c"):
            text = open(os.path.join(root, f), encoding="utf-8").read()
            if getenv.search(text):
                problems.append(f"{f}: reads the environment (only lib/settings.c may)")
    settings = open(os.path.join(root, "lib", "settings.c"), encoding="utf-8").read()
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    for name in sorted(set(re.findall(r'"(PRESCORE_[A-Z_]+)"', settings))):
        if f"`{name}" not in readme:
            problems.append(f"README.md: the environment table does not name {name}")
    for p in problems:
        print(p)
    print(f"{len(files)} files of lib/ checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
