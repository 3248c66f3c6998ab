#!/usr/bin/python3
"""Mutate the trees given as arguments, as the benchmarks' "20% changed, 5%
deleted, 5% added" (bench.sh, bench-recovery.sh through bench-lib.sh).

Changed files keep their size and mtime (one byte flipped), so only a
content check (rsync -c, sha256) finds them. Paths below the prefixes in
MUTATE_SKIP (one a line) are left alone. Seeded: the same tree gets the same
mutation. Prints the counts changed, deleted, added.
"""
import os, random, sys
random.seed(11)
skip = [s.rstrip("/") for s in os.environ.get("MUTATE_SKIP", "").splitlines() if s.strip()]
files = []
for root in sys.argv[1:]:
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if any(p == s or p.startswith(s + "/") for s in skip):
                continue
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(p)
files.sort()
random.shuffle(files)
n = len(files)
mod, dele = files[: n // 5], files[n // 5 : n // 5 + n // 20]
for p in mod:
    st = os.stat(p)
    with open(p, "r+b") as fh:
        if st.st_size:
            off = random.randrange(st.st_size)
            fh.seek(off)
            b = fh.read(1)
            fh.seek(off)
            fh.write(bytes([b[0] ^ 0x5a]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
for p in dele:
    os.unlink(p)
for i, p in enumerate(files[: n // 20]):
    if os.path.exists(p):
        with open(p + ".added%d" % i, "wb") as fh:
            fh.write(os.urandom(512))
print(len(mod), len(dele), n // 20)
