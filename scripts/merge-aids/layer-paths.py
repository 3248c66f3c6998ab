#!/usr/bin/env python3
"""Point every `crate::<module>` at the module's layer (issue 17).
Run on src after merging a branch made before the layout:
    scripts/merge-aids/layer-paths.py $(git ls-files "src/*.rs")
Re-runnable: a path already under its layer is left alone. Then cargo fmt."""
import re, sys, pathlib
LAYER = {}
for layer, names in {
    "commands": "ibu job oadp report rollback stateroot status",
    "node": "cmd etcd host images ostree",
    "store": "journal lock manifest verify",
    "util": "error fault fsutil logger progress",
}.items():
    for n in names.split():
        LAYER[n] = layer
names = "|".join(LAYER)
single = re.compile(r"\bcrate::(" + names + r")\b(?!\s*[a-zA-Z_])")
group = re.compile(r"\bcrate::\{([^{}]*)\}")
def fix_group(m):
    items = [i.strip() for i in m.group(1).split(",") if i.strip()]
    out = []
    for i in items:
        head = i.split("::")[0]
        out.append(f"{LAYER[head]}::{i}" if head in LAYER else i)
    if out == items:
        return m.group(0)
    return "crate::{" + ", ".join(out) + "}"
for p in sys.argv[1:]:
    path = pathlib.Path(p)
    s = path.read_text()
    t = s.replace("crate::recovery::durable", "crate::util::durable")
    t = group.sub(fix_group, t)
    t = single.sub(lambda m: f"crate::{LAYER[m.group(1)]}::{m.group(1)}", t)
    if t != s:
        path.write_text(t)
        print("rewrote", p)
