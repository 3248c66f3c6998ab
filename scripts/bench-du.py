#!/usr/bin/python3
"""Fill a sandbox node with one step of the DU-sized corpus (issue 25).

  bench-du.py ROOT STEP FACTOR   (sourced by bench-lib.sh's du profile)

At FACTOR 1 one step is a far-edge DU node's size:
  /var/lib/kubelet  about 10 GiB in about 1M entries: 250 pods, each with 40
                    configmap/secret/projected volumes laid out as the kubelet
                    does (a timestamped dir, ..data -> it, each key a symlink
                    into ..data) of 50 keys of 50 B to 8 KiB (yaml text, PEM
                    and base64 secrets, the CA bundles every pod shares),
                    8.5 GiB of emptyDir files (60% log text, 40% random as
                    compressed data), 4 sparse files (2 GiB apparent, 16 MiB data)
  /etc              200 MiB in 40k files: 20 static-pod revisions of each of
                    the four control-plane operators (1 MiB each, mostly CA
                    bundles and the pod manifest, alike across revisions) and
                    config files of 1 to 10 KiB
  /usr/local        1 GiB of this machine's /usr/bin, /usr/lib files
Every file gets a security.selinux label, as on the node. FACTOR divides every
size and count (FACTOR 100: a quick run); STEP seeds the randomness and names
the step's dirs, so steps 1..N make the growth runs (N times the corpus).
The etcd part is filled through the API by bench-lib.sh.
"""
import os
import random
import shutil
import sys

root, step, factor = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rnd = random.Random(step)
GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10
LABEL_K = b"system_u:object_r:container_file_t:s0:c%d,c%d"
LABEL_E = b"system_u:object_r:etc_t:s0"

WORDS = (b"apiVersion kind metadata name namespace labels annotations spec containers "
         b"image imagePullPolicy IfNotPresent resources limits requests cpu memory "
         b"volumeMounts mountPath readOnly true false env value valueFrom secretKeyRef "
         b"configMapKeyRef openshift-monitoring openshift-sriov-network-operator ptp "
         b"quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256 tolerations effect "
         b"NoSchedule node-role.kubernetes.io/master priorityClassName system-node-critical "
         b"livenessProbe httpGet port path /healthz initialDelaySeconds periodSeconds "
         b"level=info msg= component=kubelet ts= caller= duration_ms= error=nil").split()


def text(n):
    """n bytes of yaml/log-like text, fresh tokens and numbers."""
    out, size = [], 0
    while size < n:
        line = b" ".join(rnd.choices(WORDS, k=rnd.randint(3, 9)))
        line += b": %d\n" % rnd.getrandbits(rnd.choice((8, 16, 32, 48)))
        out.append(b"  " * rnd.randint(0, 4) + line)
        size += len(out[-1])
    return b"".join(out)[:n]


def pem(n):
    import base64
    body = base64.encodebytes(os.urandom(n * 3 // 4))
    return (b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n")[:n]


def label(path, value):
    os.setxattr(path, "security.selinux", value, follow_symlinks=False)


def put(path, data, lab):
    with open(path, "wb") as f:
        f.write(data)
    label(path, lab)


def small_size():
    # 50 B to 8 KiB, most under 2 KiB (configmap keys, tokens, certs).
    return int(min(8 * KiB, max(50, rnd.lognormvariate(6.8, 1.0))))


def kubelet(k):
    pods = max(2, round(250 / factor))
    shared = [pem(rnd.randint(2 * KiB, 6 * KiB)) for _ in range(4)]  # CA bundles
    big_total = int(8.5 * GiB / factor)
    bigs = max(4, round(34 / factor))
    sparse_n = 4
    for p in range(pods):
        uid = "%08x-%04x-4000-8000-%012x" % (step, p, rnd.getrandbits(48))
        pod = os.path.join(k, "pods", uid)
        lab = LABEL_K % (rnd.randint(0, 1023), rnd.randint(0, 1023))
        for v in range(40):
            kind = ("kubernetes.io~configmap", "kubernetes.io~secret",
                    "kubernetes.io~projected")[v % 3]
            vol = os.path.join(pod, "volumes", kind, "vol-%02d" % v)
            ts = "..2026_11_%02d_%02d_%02d_%02d.%09d" % (
                rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59),
                rnd.randint(0, 59), rnd.getrandbits(29))
            data = os.path.join(vol, ts)
            os.makedirs(data)
            os.symlink(ts, os.path.join(vol, "..data"))
            for key in range(50):
                name = "key-%02d.%s" % (key, ("yaml", "crt", "token")[v % 3])
                if kind.endswith("projected") and key < 2:
                    body = shared[key + 2 * (v % 2)]
                elif kind.endswith("secret"):
                    body = pem(small_size())
                else:
                    body = text(small_size())
                put(os.path.join(data, name), body, lab)
                os.symlink(os.path.join("..data", name), os.path.join(vol, name))
            label(data, lab)
        for c in range(3):
            d = os.path.join(pod, "containers", "c%d" % c)
            os.makedirs(d)
            put(os.path.join(d, "%08x" % rnd.getrandbits(32)), text(200), lab)
        os.makedirs(os.path.join(pod, "plugins", "kubernetes.io~empty-dir"))
        put(os.path.join(pod, "etc-hosts"), text(300), lab)
    # emptyDir volumes of the first pods: large files.
    ed = os.path.join(k, "pods", "%08x-big" % step, "volumes", "kubernetes.io~empty-dir", "data")
    os.makedirs(ed)
    each = big_total // bigs
    for b in range(bigs):
        path = os.path.join(ed, "segment-%04d" % b)
        with open(path, "wb") as f:
            left = each
            while left > 0:
                n = min(left, MiB)
                f.write(text(n) if rnd.random() < 0.6 else os.urandom(n))
                left -= n
        label(path, LABEL_K % (1, 2))
    for s in range(sparse_n):
        path = os.path.join(ed, "sparse-%d.img" % s)
        size = max(64 * MiB, int(2 * GiB / factor))
        with open(path, "wb") as f:
            f.truncate(size)
            for i in range(16):
                f.seek(rnd.randrange(0, size - MiB) & ~4095)
                f.write(os.urandom(max(4096, int(MiB / factor)) & ~4095))
        label(path, LABEL_K % (1, 2))


def etc(e):
    # 20 static-pod revisions of each operator, alike across revisions.
    sp = os.path.join(e, "kubernetes", "static-pod-resources")
    revs = max(1, round(20 / factor))
    bundles = [pem(200 * KiB) for _ in range(3)]
    manifest = text(60 * KiB)
    for op in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for r in range(1 + (step - 1) * revs, 1 + step * revs):
            d = os.path.join(sp, "%s-pod-%d" % (op, 1000 + r))
            if os.path.exists(d):
                continue
            for i, b in enumerate(bundles):
                os.makedirs(os.path.join(d, "configmaps", "ca-%d" % i))
                put(os.path.join(d, "configmaps", "ca-%d" % i, "ca-bundle.crt"), b, LABEL_E)
            for i in range(12):
                os.makedirs(os.path.join(d, "secrets", "s-%d" % i))
                put(os.path.join(d, "secrets", "s-%d" % i, "tls.crt"), pem(2 * KiB), LABEL_E)
                put(os.path.join(d, "secrets", "s-%d" % i, "tls.key"), pem(1700), LABEL_E)
            put(os.path.join(d, "%s-pod.yaml" % op), manifest + b"# revision %d\n" % r, LABEL_E)
    # The rest of /etc: config files of 1 to 10 KiB.
    n = int(40000 / factor) - 4 * revs * 28  # a revision: 28 files, 700 KiB
    budget = int(200 * MiB / factor) - 4 * revs * 700 * KiB
    each = max(KiB, budget // max(1, n))
    top = os.path.join(e, "bench-du-%d" % step)
    for i in range(max(0, n)):
        d = os.path.join(top, "d%03d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d)
        put(os.path.join(d, "f%05d.conf" % i), text(rnd.randint(each // 4, each * 7 // 4)), LABEL_E)


def usrlocal(u):
    budget = int(GiB / factor)
    dst = os.path.join(u, "du-%d" % step)
    for src in ("/usr/bin", "/usr/lib"):
        for dirpath, dirs, files in os.walk(src):
            dirs.sort()
            for f in sorted(files):
                s = os.path.join(dirpath, f)
                if os.path.islink(s) or not os.path.isfile(s):
                    continue
                size = os.path.getsize(s)
                if size > budget:
                    continue
                t = os.path.join(dst, os.path.relpath(s, "/usr"))
                os.makedirs(os.path.dirname(t), exist_ok=True)
                shutil.copy2(s, t)
                budget -= size
                if budget < 4 * KiB:
                    return


kubelet(os.path.join(root, "var/lib/kubelet"))
etc(os.path.join(root, "etc"))
usrlocal(os.path.join(root, "var/usrlocal"))
