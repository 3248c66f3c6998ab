"""The sandbox's rpm-ostree: status --json, rollback [-r], cleanup, on a real sysroot.

The booted deployment is the one named in the sandbox's boot state file
("<stateroot> <checksum> <serial>"), since nothing here really boots.
"""
import json
import os
import sys

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree  # noqa: E402


def load(path):
    sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(path))
    if path == "/":
        # A booted host (the VM lane's guest): /boot is mounted read-only, as
        # on RHCOS, and rpm-ostreed writes it from a mount namespace of its
        # own; libostree's ostree_sysroot_initialize_with_mount_namespace does
        # that (ostreedev/ostree src/libostree/ostree-sysroot.c).
        sysroot.initialize_with_mount_namespace(None)
    sysroot.load(None)
    return sysroot


def booted_key(state):
    try:
        with open(state) as f:
            parts = f.read().split()
            return (parts[0], parts[1], int(parts[2]))
    except (OSError, IndexError, ValueError):
        return None


def key(d):
    return (d.get_osname(), d.get_csum(), d.get_deployserial())


def version(sysroot, d):
    ok, commit = sysroot.repo().load_variant(OSTree.ObjectType.COMMIT, d.get_csum())
    v = commit.get_child_value(0).lookup_value("version", None)
    return v.get_string() if v else None


def status(sysroot, booted):
    out = []
    for d in sysroot.get_deployments():
        origin = d.get_origin()
        refspec = origin.get_string("origin", "refspec") if origin else None
        out.append({
            "id": "%s-%s.%d" % key(d),
            "osname": d.get_osname(),
            "checksum": d.get_csum(),
            "serial": d.get_deployserial(),
            "version": version(sysroot, d),
            "origin": refspec,
            "booted": key(d) == booted,
            "pinned": d.is_pinned(),
            "staged": d.is_staged(),
        })
    print(json.dumps({"deployments": out, "transaction": None}, indent=2))


def rollback(sysroot, booted, reboot):
    deps = sysroot.get_deployments()
    b = next((d for d in deps if key(d) == booted), None)
    if b is None:
        print("error: Not currently booted into an OSTree system", file=sys.stderr)
        sys.exit(1)
    # As coreos/rpm-ostree src/daemon/rpmostreed-transaction-types.cxx
    # rollback_transaction_execute, over ostree_sysroot_query_deployments_for
    # (ostree-sysroot.c) for the booted stateroot: pending is the first of
    # its deployments before the booted one, rollback the first after it.
    # Neither: "No rollback deployment found". A rollback one goes first;
    # with only a pending one, the booted one goes first ("undo a rollback").
    same = [d for d in deps if d.get_osname() == b.get_osname()]
    i = same.index(b)
    pending = same[0] if i > 0 else None
    rb = same[i + 1] if i + 1 < len(same) else None
    if pending is None and rb is None:
        print("error: No rollback deployment found", file=sys.stderr)
        sys.exit(1)
    first = rb if rb is not None else b
    new = [first] + [d for d in deps if d is not first]
    sysroot.write_deployments(new, None)
    print("Moving '%s.%d' to be first deployment" % (first.get_csum(), first.get_deployserial()))
    if reboot:
        state_dir = os.path.dirname(sys.argv[2])
        open(os.path.join(state_dir, "reboot-requested"), "w").close()


def main():
    path, state, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    sysroot = load(path)
    booted = booted_key(state)
    verb = args[0] if args else ""
    if verb == "status" and "--json" in args:
        status(sysroot, booted)
    elif verb == "status":
        for d in sysroot.get_deployments():
            mark = "●" if key(d) == booted else " "
            print("%s %s:%s\n    Version: %s\n    Pinned: %s" % (
                mark, d.get_osname(), d.get_csum(), version(sysroot, d), "yes" if d.is_pinned() else "no"))
    elif verb == "rollback":
        rollback(sysroot, booted, "-r" in args or "--reboot" in args)
    elif verb == "cleanup":
        sysroot.cleanup(None)
    else:
        print("rpm-ostree shim: unsupported %r" % args, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
