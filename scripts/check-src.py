#!/usr/bin/env python3
"""Source checks `make test` enforces (curl's checksrc idea).

1. Layering (DESIGN §2): a file under src/LAYER/ includes only its own
   folder's headers and the public header (LAYER.h) of a layer below it in
   RANK; never another folder's internal header (*_int.h or any header that is
   not the folder's public one), never a layer beside or above it.
2. Banned calls: strcpy, strcat, sprintf, vsprintf, atoi, atol, gets anywhere
   in src/; raw malloc, calloc, realloc, free, strdup outside src/base (use
   rein_malloc and friends, so allocation faults can be injected).

Exceptions live in scripts/check-src.allow, one "PATH CALL  # why" a line.
Prints FILE:LINE: message for each violation; exit 1 when there is any.
Usage: scripts/check-src.py [ROOT]
"""
import os
import re
import sys

# Lower rank first; a layer may include the public header of a layer of
# strictly lower rank. Equal rank = siblings, which must not depend on each
# other (the engine stays pure: no store, io, model or tools).
RANK = {
    "base": 0,
    "schema": 1, "script": 1,
    "policy": 2,
    "spec": 3,
    "engine": 4, "store": 4, "io": 4,
    "mcp": 5, "model": 5, "trace": 5,
    "tools": 6,
    "runner": 7,
    "eval": 8,
    "cli": 9,
}
PUBLIC = {l: l + ".h" for l in RANK}

BANNED = ["strcpy", "strcat", "sprintf", "vsprintf", "atoi", "atol", "gets"]
RAW_ALLOC = ["malloc", "calloc", "realloc", "free", "strdup"]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def strip(text):
    """Blanks comments, string and character literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * max(0, j - i - 2) + (c if j - i >= 2 else ""))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    src = os.path.join(root, "src")
    allow = set()
    allow_path = os.path.join(root, "scripts", "check-src.allow")
    if os.path.exists(allow_path):
        for line in open(allow_path, encoding="utf-8"):
            line = line.split("#", 1)[0].split()
            if len(line) == 2:
                allow.add((line[0], line[1]))
    owner = {}  # header name -> folder
    for layer in sorted(os.listdir(src)):
        d = os.path.join(src, layer)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.endswith(".h"):
                    owner.setdefault(f, layer)
    problems = []
    calls = re.compile(r"(?<![\w.>])(" + "|".join(BANNED + RAW_ALLOC) + r")\s*\(")
    used_allow = set()
    for layer in sorted(os.listdir(src)):
        d = os.path.join(src, layer)
        if not os.path.isdir(d):
            continue
        if layer not in RANK:
            problems.append("src/%s: a folder that is not in the layer table of %s"
                            % (layer, os.path.relpath(__file__, root)))
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith((".c", ".h")):
                continue
            rel = "src/%s/%s" % (layer, f)
            text = open(os.path.join(d, f), encoding="utf-8", errors="replace").read()
            for no, line in enumerate(text.split("\n"), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                h = os.path.basename(m.group(1))
                other = owner.get(h)
                if other is None or other == layer:
                    continue
                if h != PUBLIC.get(other):
                    problems.append("%s:%d: includes %s, an internal header of src/%s"
                                    % (rel, no, h, other))
                elif RANK[other] >= RANK[layer]:
                    problems.append("%s:%d: layer %s includes %s: %s is not below %s (DESIGN §2)"
                                    % (rel, no, layer, h, other, layer))
            for no, line in enumerate(strip(text).split("\n"), 1):
                for m in calls.finditer(line):
                    name = m.group(1)
                    if name in RAW_ALLOC and layer == "base":
                        continue
                    if (rel, name) in allow:
                        used_allow.add((rel, name))
                        continue
                    why = ("use rein_%s (base.h)" % name if name in RAW_ALLOC
                           else "banned call (use snprintf, strtol, rein_buf)")
                    problems.append("%s:%d: %s(): %s" % (rel, no, name, why))
    for a in sorted(allow - used_allow):  # a warning: the fix may land elsewhere first
        print("scripts/check-src.allow: stale entry '%s %s' (nothing uses it)" % a,
              file=sys.stderr)
    for p in problems:
        print(p)
    if problems:
        print("check-src: %d problem(s)" % len(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
