"""The sandbox's rpm-ostree: status --json, rollback [-r], cleanup [-p], on a real sysroot.

The booted deployment is the one named in the sandbox's boot state file
("<stateroot> <checksum> <serial>"), since nothing here really boots. For
the same reason libostree does not load the staged deployment here (it reads
/run/ostree/staged-deployment only on a booted host,
_ostree_sysroot_reload_staged in ostreedev/ostree src/libostree/ostree-sysroot.c):
the shim reads the node's record itself and shows it first, as rpm-ostree
shows a staged deployment.
"""
import json
import os
import sys

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree  # noqa: E402


def load(path):
    sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(path))
    sysroot.load(None)
    return sysroot


def booted_key(state):
    try:
        with open(state) as f:
            parts = f.read().split()
            return (parts[0], parts[1], int(parts[2]))
    except (OSError, IndexError, ValueError):
        return None


STAGED = "run/ostree/staged-deployment"


def staged_name(root):
    """The staged deployment's (osname, "<csum>.<serial>") from the node's
    record: a{sv} with "target" a{sv} {name, osname, bootcsum}
    (serialize_deployment_to_variant, ostree-sysroot-deploy.c)."""
    try:
        with open(os.path.join(root, STAGED), "rb") as f:
            data = f.read()
    except OSError:
        return None
    from gi.repository import GLib
    v = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"), GLib.Bytes.new(data), True)
    target = v.lookup_value("target", GLib.VariantType.new("a{sv}"))
    if target is None:
        return None
    return (target.lookup_value("osname", None).get_string(), target.lookup_value("name", None).get_string())


def drop_staged(sysroot, root):
    """What libostree does when a write of the deployments leaves the staged
    one out: unlink the record, remove the deployment's directory
    (_ostree_sysroot_write_deployments_internal, ostree-sysroot-deploy.c)."""
    st = staged_name(root)
    os.unlink(os.path.join(root, STAGED))
    try:
        os.unlink(os.path.join(root, "run/ostree/staged-deployment-locked"))
    except OSError:
        pass
    if st:
        print("Removed staged deployment %s" % st[1])
    # Its directory is no longer referenced: ostree's cleanup removes it.
    sysroot.cleanup(None)


def key(d):
    return (d.get_osname(), d.get_csum(), d.get_deployserial())


def version(sysroot, d):
    return version_of(sysroot, d.get_csum())


def version_of(sysroot, csum):
    ok, commit = sysroot.repo().load_variant(OSTree.ObjectType.COMMIT, csum)
    v = commit.get_child_value(0).lookup_value("version", None)
    return v.get_string() if v else None


def status(sysroot, booted, root):
    out = []
    st = staged_name(root)
    if st:
        csum, serial = st[1].rsplit(".", 1)
        out.append({
            "id": "%s-%s" % st,
            "osname": st[0],
            "checksum": csum,
            "serial": int(serial),
            "version": version_of(sysroot, csum),
            "origin": None,
            "booted": False,
            "pinned": False,
            "staged": True,
        })
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


def rollback(sysroot, booted, reboot, root):
    deps = sysroot.get_deployments()
    b = next((d for d in deps if key(d) == booted), None)
    if b is None:
        print("error: Not currently booted into an OSTree system", file=sys.stderr)
        sys.exit(1)
    # A staged deployment is the pending one, first of all: upstream refuses
    # (rollback_transaction_execute: "Staged deployment (remove with
    # cleanup -p)").
    st = staged_name(root)
    if st and st[0] == b.get_osname():
        print("error: Staged deployment (remove with cleanup -p)", file=sys.stderr)
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


def cleanup_pending(sysroot, booted, root):
    """rpm-ostree cleanup -p, as rpmostree_syscore_filter_deployments
    (coreos/rpm-ostree src/daemon/rpmostree-sysroot-core.cxx): of the booted
    stateroot, drop the deployments before the booted one, except pinned
    ones; the staged one (first of all) with them; other stateroots kept."""
    deps = sysroot.get_deployments()
    b = next((d for d in deps if key(d) == booted), None)
    if b is None:
        print("error: Not currently booted into an OSTree system", file=sys.stderr)
        sys.exit(1)
    st = staged_name(root)
    new, found = [], False
    for d in deps:
        if key(d) == booted:
            found = True
        elif found or d.get_osname() != b.get_osname() or d.is_pinned():
            pass
        else:
            continue
        new.append(d)
    if len(new) == len(deps) and not (st and st[0] == b.get_osname()):
        print("Deployments unchanged.")
        return
    if len(new) != len(deps):
        opts = OSTree.SysrootWriteDeploymentsOpts()
        opts.do_postclean = False
        sysroot.write_deployments_with_options(new, opts, None)
    if st and st[0] == b.get_osname():
        drop_staged(sysroot, root)
    else:
        sysroot.cleanup(None)


def main():
    path, state, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    sysroot = load(path)
    booted = booted_key(state)
    verb = args[0] if args else ""
    if verb == "status" and "--json" in args:
        status(sysroot, booted, path)
    elif verb == "status":
        for d in sysroot.get_deployments():
            mark = "●" if key(d) == booted else " "
            print("%s %s:%s\n    Version: %s\n    Pinned: %s" % (
                mark, d.get_osname(), d.get_csum(), version(sysroot, d), "yes" if d.is_pinned() else "no"))
    elif verb == "rollback":
        rollback(sysroot, booted, "-r" in args or "--reboot" in args, path)
    elif verb == "cleanup" and ("-p" in args or "--pending" in args):
        cleanup_pending(sysroot, booted, path)
    elif verb == "cleanup":
        sysroot.cleanup(None)
    else:
        print("rpm-ostree shim: unsupported %r" % args, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
