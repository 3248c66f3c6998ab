//! Helpers of the recovery tests: the node before an upgrade, a failed
//! upgrade, driving a recovery to its end, and the check that the node is
//! back (rsync and xattr oracles, etcd keys).

use super::*;
use std::path::PathBuf;

/// What the node looked like before the upgrade: tree copies and etcd keys.
pub struct Before {
    pub dir: TempDir,
    pub keys: String,
}

/// Paths under /etc that restore neither writes nor deletes (etc.exclude.list).
pub const ETC_EXCLUDES: &str = "--exclude=/cni/multus/certs --exclude=/kubernetes/cni/net.d --exclude=/sandbox-runtime --exclude=/.updated --exclude=/kubernetes/manifests";

pub fn etcd_dump(sb: &Sandbox) -> String {
    sb.etcdctl("get '' --prefix")
}

pub fn trees(sb: &Sandbox) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("etc", sb.root().join("etc")),
        ("local", sb.root().join("var/usrlocal")),
        ("kubelet", sb.root().join("var/lib/kubelet")),
        ("opt", sb.root().join("opt")),
    ]
}

pub fn take_backup(sb: &Sandbox) -> Before {
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    capture(sb)
}

/// Copies of the trees a backup holds now, and the etcd keys (the extras
/// tree `opt` only where the profile has machine-config files).
pub fn capture(sb: &Sandbox) -> Before {
    let dir = TempDir::new("before");
    for (name, src) in trees(sb) {
        if name == "opt" && sb.profile() == "minimal" {
            continue;
        }
        sh(&format!(
            "rsync -aAXHx --numeric-ids {}/ {}/",
            q(&src),
            q(&dir.path().join(name))
        ));
    }
    Before {
        dir,
        keys: etcd_dump(sb),
    }
}

/// Record the failed cluster upgrade `4.17.<n>` (a Partial ClusterVersion
/// history entry): what makes a recovery due for the lifecycle rule.
pub fn record_failed_upgrade(sb: &Sandbox, n: u32) {
    sh(&format!(
        "{}/scripts/sandbox.sh cluster-upgrade {} 4.17.{n} Partial >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
}

/// Change, add and delete in every tree and the extras, and in etcd.
pub fn upgrade(sb: &Sandbox, n: u32) {
    record_failed_upgrade(sb, n);
    sb.sh(&format!(
        r#"cd $ROOT
echo upgraded-{n} >> etc/hostname; echo new > etc/new-in-upgrade-{n}; rm -f etc/kubernetes/kubelet.conf; chmod 0600 etc/tmpfiles.d/sandbox.conf
m=$(stat -c %y var/usrlocal/bin/configure-ovs.sh); sed -i 's/ovs/OVS/' var/usrlocal/bin/configure-ovs.sh; touch -d "$m" var/usrlocal/bin/configure-ovs.sh
echo tool > var/usrlocal/bin/new-tool-{n}; rm -f var/usrlocal/bin/recover-kubeconfig.sh
echo '{{"kind":"KubeletConfigurationX"}}' > var/lib/kubelet/config.json
mkdir -p var/lib/kubelet/pods/new-pod-{n}/volumes; echo x > var/lib/kubelet/pods/new-pod-{n}/volumes/f
rm -f var/lib/kubelet/pki/kubelet-client-current.pem; ln -s /etc/passwd var/lib/kubelet/pki/kubelet-client-current.pem
setfattr -x security.selinux var/lib/kubelet/config.json 2>/dev/null || true
echo extra=2 > opt/sandbox/tool.conf"#
    ));
    sb.etcdctl(&format!("put /upgrade/key-{n} v"));
    sb.etcdctl("del /kubernetes.io/configmaps/openshift-config/sandbox-1");
}

/// A failed upgrade's changes that every profile has: /etc, /usr/local,
/// kubelet, etcd.
pub fn diverge(sb: &Sandbox, n: u32) {
    record_failed_upgrade(sb, n);
    sb.sh(&format!(
        r#"cd $ROOT; echo upgraded-{n} >> etc/hostname; echo tool > var/usrlocal/bin/new-tool-{n}
echo '{{"kind":"X"}}' > var/lib/kubelet/config.json"#
    ));
    sb.etcdctl(&format!("put /upgrade/key-{n} v"));
    sb.etcdctl("del /kubernetes.io/configmaps/openshift-config/sandbox-2");
}

pub fn check_restored(sb: &Sandbox, before: &Before, what: &str) {
    for (name, node) in trees(sb) {
        if !before.dir.path().join(name).exists() {
            continue;
        }
        // The extras archive holds the machine-config files, not their
        // parent directories: their times are not part of the backup.
        let extra = match name {
            "etc" => ETC_EXCLUDES,
            "opt" => "-x --omit-dir-times",
            _ => "-x",
        };
        let diff = rsync_diff(&before.dir.path().join(name), &node, extra);
        assert_eq!(
            diff,
            Vec::<String>::new(),
            "{what}: {name} differs from before the upgrade"
        );
        if name != "etc" {
            assert_eq!(
                meta_dump(&before.dir.path().join(name)),
                meta_dump(&node),
                "{what}: {name} xattrs/ACLs"
            );
        }
    }
    assert_eq!(etcd_dump(sb), before.keys, "{what}: etcd keys");
    assert!(
        !sb.root().join("var/recovery/journal.json").exists(),
        "{what}: journal left"
    );
}

/// Run a restore command; (code or None when killed, stdout, stderr).
pub fn restore(
    sb: &Sandbox,
    args: &[&str],
    crash_at: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut c = sb.command(&["restore"]);
    c.args(args)
        .args(["--poll-interval", "100", "--wait-timeout", "60"]);
    if let Some(p) = crash_at {
        c.env("UPGRADE_RECOVERY_CRASH_AT", p);
    }
    let o = c.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Drive the recovery to its end: resume after crashes, reboot when told.
pub fn finish(sb: &Sandbox, what: &str) {
    for _ in 0..6 {
        let journal = sb.root().join("var/recovery/journal.json").exists();
        let args: &[&str] = if journal { &["--resume"] } else { &[] };
        let (code, out, err) = restore(sb, args, None);
        match code {
            Some(0) if out.contains("Reboot now") => sb.reboot(),
            Some(0) if out.contains("Recovery complete") => return,
            Some(1) if err.contains("must reboot before the cluster phase") => sb.reboot(),
            _ => panic!("{what}: restore {args:?} gave {code:?}\n{out}\n{err}"),
        }
    }
    panic!("{what}: the recovery did not finish");
}
