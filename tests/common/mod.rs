//! Helpers shared by the integration tests: shell commands, the independent
//! oracles (rsync, getfattr, getfacl), and test trees.
#![allow(dead_code)]

// The tests drive the fault points, the race hooks and generate-docs, which
// only a build with the `testing` feature has (the shipped binary does not).
// Clippy still lints the tests without it.
#[cfg(not(any(feature = "testing", clippy)))]
compile_error!("the integration tests need the test seams: run `cargo test --features testing` (scripts/test.sh does)");

pub mod admin;
pub mod rawtar;
pub mod recovery;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `f`'s result, or a panic naming `what` when it takes over `secs`
/// seconds (a hang found, not waited on).
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: not done in {secs} s"))
}

/// Run a shell snippet; panic with its output when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "command failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// What `rsync -naAXHc --delete --numeric-ids` would change to make `dst`
/// equal `src` (empty: identical). Extra args go before the paths.
pub fn rsync_diff(src: &Path, dst: &Path, extra: &str) -> Vec<String> {
    let out = sh(&format!(
        "rsync -naAXHc --delete --numeric-ids --itemize-changes {extra} {}/ {}/",
        q(src),
        q(dst)
    ));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Every xattr of every entry, symlinks not followed (getfattr), and every
/// ACL (getfacl), with paths relative to the dir.
pub fn meta_dump(dir: &Path) -> String {
    // find -xdev: mount points below the top are not part of a tree.
    let x = sh(&format!(
        "cd {} && find . -xdev -print0 | sort -z | xargs -0 getfattr -h -d -m - -e hex 2>/dev/null | grep -v '^$' || true",
        q(dir)
    ));
    let a = sh(&format!(
        "cd {} && find . -xdev ! -type l -print0 | sort -z | xargs -0 getfacl -P -n 2>/dev/null || true",
        q(dir)
    ));
    format!("{x}\n{a}")
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = std::env::var("UR_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
        let p = PathBuf::from(sh(&format!("mktemp -d {base}/ur-{tag}-XXXXXX")).trim());
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let p = self.0.display().to_string();
        let _ = Command::new("bash")
            .args([
                "-c",
                &format!(
                    "awk -v p='{p}/' 'index($2, p) == 1 {{print $2}}' /proc/self/mounts | sort -r | xargs -r -n1 umount -l; chattr -R -i '{p}' 2>/dev/null; rm -rf '{p}'"
                ),
            ])
            .status();
    }
}

/// A tree holding every kind of entry and metadata the archive must keep.
pub fn make_rich_tree(d: &Path) {
    std::fs::create_dir_all(d).unwrap();
    sh(&format!(
        r#"cd {d}
mkdir -p dir/sub empty-dir 'deep/{long}' sticky
echo hello > dir/a.txt
: > dir/empty
head -c 3000000 /dev/urandom > dir/big.bin          # read in two passes
head -c 70000 /dev/urandom > dir/mid.bin
printf 'x%.0s' $(seq 1 513) > dir/odd-size
ln -s a.txt dir/rel-link
ln -s /etc/passwd dir/abs-link
ln -s ../../nowhere dir/dangling
ln dir/a.txt dir/hard1
ln dir/a.txt sub-hard2
mkfifo dir/fifo
mknod dir/null c 1 3
mknod dir/loop b 7 200
chown 1234:5678 dir/a.txt
chown -h 42:43 dir/rel-link
chmod 4755 dir/mid.bin
chmod 2710 dir/sub
chmod 1777 sticky
setfattr -n security.selinux -v system_u:object_r:etc_t:s0 dir/a.txt
setfattr -n user.note -v "one two" dir/mid.bin
setfattr -n trusted.x -v 0xdeadbeef dir/odd-size
setfattr -h -n trusted.linkattr -v lnk dir/rel-link
setfattr -n security.selinux -v system_u:object_r:kubelet_var_lib_t:s0 dir
setcap cap_net_raw+ep dir/odd-size
setfacl -m u:1000:rwx,g:1001:r dir/mid.bin
setfacl -d -m u:1000:rx dir/sub
setfacl -m u:1000:rx dir/sub
truncate -s 64M sparse.img; printf tail >> sparse.img
dd if=/dev/urandom of=sparse.img bs=4096 seek=100 count=2 conv=notrunc status=none
echo nl > "$(printf 'new\nline')"
echo bin > "$(printf 'latin1-\xe9')"
echo long > 'deep/{long}/{name255}'
touch -h -d '2021-03-04 05:06:07.123456789' dir/a.txt dir/rel-link
touch -d '2020-01-01 00:00:00.5' dir/sub
"#,
        d = q(d),
        long = "p".repeat(200) + "/" + &"q".repeat(200),
        name255 = "n".repeat(255),
    ));
}

pub fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// Allocated bytes of a file (st_blocks * 512).
pub fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().blocks() * 512
}

/// A sandbox node made by scripts/sandbox.sh, torn down on drop.
pub struct Sandbox {
    pub dir: TempDir,
}

pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_upgrade-recovery"))
}

impl Sandbox {
    /// A sandbox of the default profile, or of the one named by
    /// `UR_SANDBOX_PROFILE` (so that a whole suite can run on each profile).
    pub fn new() -> Sandbox {
        let p = std::env::var("UR_SANDBOX_PROFILE").unwrap_or_else(|_| "default".into());
        Sandbox::with_profile(&p)
    }
    /// A sandbox of a profile of `scripts/sandbox.sh create --profile`:
    /// `default`, `minimal` (no optional files or programs) or `rhcos`.
    ///
    /// The sandbox exists before it is built, so that a failed build is torn
    /// down too (etcd stopped, mounts and the `rhcos` boot file system's
    /// loop device released).
    pub fn with_profile(profile: &str) -> Sandbox {
        let sb = Sandbox {
            dir: TempDir::new("sandbox"),
        };
        sh(&format!(
            "{}/scripts/sandbox.sh create --profile {} {} >/dev/null",
            q(&project()),
            profile,
            q(sb.dir.path())
        ));
        sb
    }
    /// `ostree admin status` of the node, with the node root as the sysroot
    /// (as on the node; on `rhcos` `<root>/sysroot` lists no deployments).
    pub fn ostree_status(&self) -> String {
        self.sh("ostree admin --sysroot=$ROOT status")
    }
    /// The profile it was made with.
    pub fn profile(&self) -> String {
        std::fs::read_to_string(self.ctl().join("state/profile"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "default".into())
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn ctl(&self) -> PathBuf {
        self.dir.path().join("ctl")
    }
    /// PATH with the shims first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.ctl().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
    /// Run a shell snippet with the shims on PATH and $ROOT, $CTL set.
    pub fn sh(&self, script: &str) -> String {
        sh(&format!(
            "export PATH={}; ROOT={}; CTL={}; {script}",
            q(Path::new(&self.path_env())),
            q(&self.root()),
            q(&self.ctl())
        ))
    }
    /// etcdctl against the sandbox's etcd, over TLS.
    pub fn etcdctl(&self, args: &str) -> String {
        self.sh(&format!(
            r#". $CTL/state/ports; c=$ROOT/etc/kubernetes/static-pod-resources/etcd-certs
ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT --cacert=$c/configmaps/etcd-serving-ca/ca-bundle.crt --cert=$c/secrets/etcd-all-certs/etcd-peer-sno.crt --key=$c/secrets/etcd-all-certs/etcd-peer-sno.key --command-timeout=15s {args}"#
        ))
    }
    pub fn reboot(&self) {
        sh(&format!(
            "{}/scripts/sandbox.sh reboot {} >/dev/null",
            q(&project()),
            q(self.dir.path())
        ));
    }
    /// The tool against this node, shims on PATH, ready for more env.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .env("PATH", self.path_env());
        c
    }
    /// Run the tool against this node; (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    /// The shims' call log without the reads of the API ([`is_api_read`]).
    pub fn calls_but_api_reads(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !is_api_read(c))
            .collect()
    }
    /// The shims' call log.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.ctl().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once(' ').map_or(l, |x| x.1).to_string())
            .collect()
    }
}

/// A logged call that reads the API (`oc get`: the lifecycle rule asks the
/// ClusterVersion wherever it decides): it changes nothing on the node.
pub fn is_api_read(call: &str) -> bool {
    call.starts_with("oc ") && call.contains(" get ")
}

/// The calls to the shims that change the node, from `from` on.
pub fn changing_calls(sb: &Sandbox, from: usize) -> Vec<String> {
    sb.calls()[from..]
        .iter()
        .filter(|c| {
            !(c.starts_with("getenforce")
                || c.starts_with("rpm-ostree status")
                || c.starts_with("systemctl is-")
                || c.starts_with("crictl ps")
                || is_api_read(c))
        })
        .cloned()
        .collect()
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(project().join("scripts/sandbox.sh"))
            .arg("teardown")
            .arg(self.dir.path())
            .status();
    }
}

impl Sandbox {
    /// The hub's Job on this node, with the mounts of TALM's Job template
    /// (openshift-kni/cluster-group-upgrades-operator
    /// `controllers/templates/backup-templates.go`, commit dacf199e): `/host`
    /// an emptyDir, the host's paths mounted one by one below it as its
    /// hostPath volumes (`/host/boot` and `/host/proc` read-only, the
    /// `/usr` ones read-only, `/host/sysroot` read-write), in a private
    /// mount namespace; then `launchBackup`. The node's `/proc` is a real
    /// proc with the node's `cmdline` and `boot_id` over it; the userland
    /// (`/usr/bin`, `/usr/lib`...) is this machine's, the sandbox node has
    /// none; the shims are mounted at their own path. With `tty`, the Job's
    /// `tty: true`: stdout and stderr are one terminal, read as the pod log
    /// reads it.
    pub fn job(&self, jail: &Path, env: &str, args: &str, tty: bool) -> Command {
        // The Job's jail as `scripts/sandbox.sh job` makes it (TALM's
        // mounts), the binary under test in it.
        let script = format!(
            "{env} UPGRADE_RECOVERY_BIN={bin} SANDBOX_JAIL={j} exec {sandbox} job {sb} {args}\n",
            j = q(jail),
            sb = q(self.dir.path()),
            bin = q(&binary()),
            sandbox = q(&project().join("scripts/sandbox.sh")),
        );
        std::fs::create_dir_all(jail).unwrap();
        let file = jail.with_extension("sh");
        std::fs::write(&file, script).unwrap();
        let mut c;
        if tty {
            // util-linux script(1): the command on a pseudo-terminal, its
            // output copied out (the kubelet's log of a tty container).
            c = Command::new("script");
            c.args(["-qefc", &format!("bash {}", q(&file)), "/dev/null"]);
        } else {
            c = Command::new("bash");
            c.arg(&file);
        }
        c
    }
}

impl Sandbox {
    /// The sandbox's backup dir.
    pub fn backup_dir(&self) -> PathBuf {
        self.root().join("var/recovery")
    }
    /// Record `sha` and `size` in the manifest for the archive of tree
    /// `name` (replaced by hand).
    pub fn set_tree(&self, name: &str, sha: &str, size: u64) {
        let mp = self.backup_dir().join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
        for t in m["trees"].as_array_mut().unwrap() {
            if t["name"] == name {
                t["sha256"] = sha.into();
                t["archive_bytes"] = size.into();
            }
        }
        std::fs::write(&mp, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    }
}

/// The lines of a sync log (`UPGRADE_RECOVERY_SYNC_LOG`) since the fault
/// point before `point` up to it: what was synced between the previous
/// step's journal entry and this one's. `skip_before`: the `STEP:before`
/// points do not count as a previous point.
pub fn since_previous_point<'a>(text: &'a str, point: &str, skip_before: bool) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("point {point}"))
        .unwrap_or_else(|| panic!("no fault point {point}:\n{text}"));
    let start = lines[..at]
        .iter()
        .rposition(|l| l.starts_with("point ") && !(skip_before && l.ends_with(":before")))
        .map_or(0, |i| i + 1);
    lines[start..=at].to_vec()
}
