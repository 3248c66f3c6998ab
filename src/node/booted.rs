//! The booted deployment, found the way ostree itself finds it: the
//! `ostree=` kernel argument in `/proc/cmdline`, resolved under the sysroot.
//!
//! Read upstream (ostreedev/ostree):
//! - `src/libotcore/otcore-prepare-root.c`, `otcore_find_proc_cmdline_key`:
//!   the cmdline is split on spaces; the first word `ostree=<value>` wins and
//!   the value runs to the next space (no quoting).
//! - `src/libostree/ostree-sysroot.c`, `parse_bootlink`: the value must match
//!   `^/ostree/boot.([01])/([^/]+)/([^/]+)/([0-9]+)$`, else "Invalid ostree=
//!   argument '...', expected ostree=/ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/TREESERIAL".
//! - `src/switchroot/ostree-prepare-root.c` resolves that path (a chain of
//!   symlinks: `boot.N` -> `boot.N.M`, `<serial>` ->
//!   `../../../deploy/<os>/deploy/<checksum>.<serial>`) under the sysroot and
//!   mounts the directory it names as `/`.
//!
//! This needs neither `/run/ostree-booted` nor a booted root, so it works in
//! the hub's Job (which renames that flag, and where `rpm-ostree` refuses:
//! "This system was not booted via libostree; cannot operate", coreos/rpm-ostree
//! `src/app/libmain.cxx`).

use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// The `ostree=` boot link, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLink {
    /// The whole value, as on the cmdline.
    pub path: String,
    pub bootversion: u8,
    pub osname: String,
    pub bootcsum: String,
    pub treeserial: u32,
}

/// A deployment named by its directory `deploy/<os>/deploy/<checksum>.<serial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRef {
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
}

/// The value of the first `ostree=` word of a kernel command line, as
/// `otcore_find_proc_cmdline_key` finds it; `None` when there is none.
pub fn find_ostree_karg(cmdline: &str) -> Option<&str> {
    cmdline
        .split([' ', '\n', '\t'])
        .filter(|w| !w.is_empty())
        .find_map(|w| w.strip_prefix("ostree="))
}

/// Parse the `ostree=` value as `parse_bootlink` does.
pub fn parse_bootlink(value: &str) -> Result<BootLink> {
    let bad = || {
        anyhow::anyhow!(
            "invalid ostree= argument '{value}', expected ostree=/ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/TREESERIAL"
        )
    };
    let rest = value.strip_prefix("/ostree/boot.").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [v, os, csum, serial] = parts[..] else {
        return Err(bad());
    };
    let bootversion = match v {
        "0" => 0,
        "1" => 1,
        _ => return Err(bad()),
    };
    if os.is_empty() || csum.is_empty() || serial.is_empty() {
        return Err(bad());
    }
    if !serial.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let treeserial = serial.parse().map_err(|_| bad())?;
    Ok(BootLink {
        path: value.to_string(),
        bootversion,
        osname: os.to_string(),
        bootcsum: csum.to_string(),
        treeserial,
    })
}

/// Parse a deployment directory name `<64 hex>.<serial>`.
pub fn parse_deploy_dirname(name: &str) -> Option<(String, u32)> {
    let (csum, serial) = name.split_once('.')?;
    if csum.len() != 64 || !csum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((csum.to_string(), serial.parse().ok()?))
}

/// Resolve a boot link under `sysroot` (the node's `/sysroot`), following
/// each symlink inside the sysroot only, to the deployment it names.
///
/// A deployment made since boot swaps the bootversion (`boot.0` <-> `boot.1`)
/// and ostree's cleanup removes the other one, so the link the kernel was
/// given may be gone while the booted deployment is not: then the same
/// `<os>/<bootcsum>/<serial>` is looked up under the other bootversion, which
/// is how ostree matched the booted deployment (osname, bootcsum,
/// bootserial; `find_booted_deployment` in ostree-sysroot.c before the
/// device/inode check replaced it).
pub fn resolve(sysroot: &Path, link: &BootLink) -> Result<DeploymentRef> {
    let other = format!(
        "ostree/boot.{}/{}/{}/{}",
        1 - link.bootversion,
        link.osname,
        link.bootcsum,
        link.treeserial
    );
    let rel = link.path.trim_start_matches('/');
    let dir = match resolve_within(sysroot, Path::new(rel)) {
        Ok(d) => d,
        Err(e) => resolve_within(sysroot, Path::new(&other))
            .map_err(|_| e)
            .with_context(|| {
                format!(
                    "resolving ostree={} under {} (nor under boot.{})",
                    link.path,
                    sysroot.display(),
                    1 - link.bootversion
                )
            })?,
    };
    let inside = dir.strip_prefix(sysroot).unwrap_or(&dir);
    let comps: Vec<String> = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let ok =
        comps.len() == 5 && comps[0] == "ostree" && comps[1] == "deploy" && comps[3] == "deploy";
    let parsed = if ok {
        parse_deploy_dirname(&comps[4])
    } else {
        None
    };
    let Some((checksum, serial)) = parsed else {
        bail!(
            "ostree={} resolves to /{}, which is not a deployment directory (ostree/deploy/OS/deploy/CHECKSUM.SERIAL)",
            link.path,
            inside.display()
        );
    };
    if !dir.is_dir() {
        bail!(
            "ostree={} resolves to /{}, which does not exist",
            link.path,
            inside.display()
        );
    }
    Ok(DeploymentRef {
        stateroot: comps[2].clone(),
        checksum,
        serial,
    })
}

/// Follow `rel` component by component below `base`; symlinks are read and
/// followed, relative ones from their directory, absolute ones from `base`;
/// `..` never climbs above `base`. A missing component is an error.
fn resolve_within(base: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = base.to_path_buf();
    let mut todo: Vec<PathBuf> = vec![rel.to_path_buf()];
    let mut hops = 0;
    while let Some(p) = todo.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir => cur = base.to_path_buf(),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    if cur != base {
                        cur.pop();
                    }
                }
                Component::Normal(n) => {
                    let next = cur.join(n);
                    let md = std::fs::symlink_metadata(&next)
                        .with_context(|| format!("{} is missing", next.display()))?;
                    if md.file_type().is_symlink() {
                        hops += 1;
                        if hops > 40 {
                            bail!("too many levels of symbolic links at {}", next.display());
                        }
                        let target = std::fs::read_link(&next)?;
                        let rest: PathBuf = comps.iter().rev().collect();
                        comps.clear();
                        if !rest.as_os_str().is_empty() {
                            todo.push(rest);
                        }
                        todo.push(target);
                        break;
                    }
                    cur = next;
                }
            }
        }
    }
    Ok(cur)
}

/// Where the booted deployment came from, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Karg {
    /// `/proc/cmdline` names it.
    Found(DeploymentRef),
    /// `/proc/cmdline` is missing or holds no `ostree=` (not booted by
    /// ostree, e.g. a sandbox or a container): the next source is asked.
    Absent(String),
}

/// Read `<root>/proc/cmdline` and resolve its `ostree=` under `sysroot`.
/// A malformed argument or one that does not resolve is an error: ostree
/// itself could not have booted from it, so the node is not what we think.
pub fn from_cmdline(cmdline_path: &Path, sysroot: &Path) -> Result<Karg> {
    let text = match std::fs::read(cmdline_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Karg::Absent(format!(
                "{} is missing",
                cmdline_path.display()
            )))
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", cmdline_path.display())),
    };
    let text = String::from_utf8_lossy(&text);
    let Some(value) = find_ostree_karg(&text) else {
        return Ok(Karg::Absent(format!(
            "{} has no ostree= argument",
            cmdline_path.display()
        )));
    };
    let link = parse_bootlink(value).with_context(|| format!("in {}", cmdline_path.display()))?;
    Ok(Karg::Found(resolve(sysroot, &link)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHCOS: &str = "BOOT_IMAGE=(hd0,gpt3)/ostree/rhcos-9b1a/vmlinuz-5.14.0 ostree=/ostree/boot.1/rhcos/9b1a6c/0 ignition.platform.id=metal root=UUID=3f0e rw rootflags=prjquota boot=UUID=1c2d systemd.unified_cgroup_hierarchy=1\n";

    #[test]
    fn finds_the_first_ostree_word() {
        assert_eq!(
            find_ostree_karg(RHCOS),
            Some("/ostree/boot.1/rhcos/9b1a6c/0")
        );
        assert_eq!(find_ostree_karg("a ostree=/x ostree=/y"), Some("/x"));
        // A key that only starts with "ostree" is another key.
        assert_eq!(
            find_ostree_karg("ostree.prepare-root.composefs=0 quiet"),
            None
        );
        assert_eq!(find_ostree_karg(""), None);
        assert_eq!(find_ostree_karg("root=/dev/sda1 ro"), None);
    }

    #[test]
    fn parses_a_bootlink() {
        let l = parse_bootlink("/ostree/boot.1/rhcos/9b1a6c/0").unwrap();
        assert_eq!(
            (
                l.bootversion,
                l.osname.as_str(),
                l.bootcsum.as_str(),
                l.treeserial
            ),
            (1, "rhcos", "9b1a6c", 0)
        );
    }

    #[test]
    fn refuses_malformed_bootlinks() {
        for bad in [
            "",
            "/ostree/boot.2/rhcos/abc/0",
            "/ostree/boot.0/rhcos/abc",
            "/ostree/boot.0/rhcos/abc/0/extra",
            "/ostree/boot.0/rhcos/abc/x",
            "/ostree/boot.0//abc/0",
            "/ostree/deploy/rhcos/deploy/abc.0",
            "ostree/boot.0/rhcos/abc/0",
        ] {
            let e = parse_bootlink(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected ostree=/ostree/boot.BOOTVERSION"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn parses_deploy_dirnames() {
        let c = "a".repeat(64);
        assert_eq!(
            parse_deploy_dirname(&format!("{c}.3")),
            Some((c.clone(), 3))
        );
        assert_eq!(parse_deploy_dirname(&format!("{c}.")), None);
        assert_eq!(parse_deploy_dirname("abc.0"), None);
        assert_eq!(parse_deploy_dirname(&format!("{c}.0.origin")), None);
    }

    fn sysroot_with_link(tag: &str, target: &str) -> (std::path::PathBuf, BootLink) {
        let t = std::env::temp_dir().join(format!("ur-booted-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let c = "b".repeat(64);
        std::fs::create_dir_all(t.join(format!("ostree/deploy/rhcos/deploy/{c}.0"))).unwrap();
        std::fs::create_dir_all(t.join("ostree/repo")).unwrap();
        std::fs::create_dir_all(t.join("ostree/boot.1.1/rhcos/csum")).unwrap();
        std::os::unix::fs::symlink("boot.1.1", t.join("ostree/boot.1")).unwrap();
        std::os::unix::fs::symlink(
            target.replace("CSUM", &c),
            t.join("ostree/boot.1.1/rhcos/csum/0"),
        )
        .unwrap();
        (t, parse_bootlink("/ostree/boot.1/rhcos/csum/0").unwrap())
    }

    #[test]
    fn resolve_follows_the_bootlinks_to_the_deployment() {
        let (t, l) = sysroot_with_link("ok", "../../../deploy/rhcos/deploy/CSUM.0");
        let r = resolve(&t, &l).unwrap();
        assert_eq!(r.stateroot, "rhcos");
        assert_eq!(r.checksum, "b".repeat(64));
        assert_eq!(r.serial, 0);
        // The bootversion swapped since boot: found under the other one.
        let l0 = parse_bootlink("/ostree/boot.0/rhcos/csum/0").unwrap();
        assert_eq!(resolve(&t, &l0).unwrap(), r);
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn resolve_refuses_a_link_to_a_non_deployment() {
        let (t, l) = sysroot_with_link("repo", "../../../repo");
        let e = format!("{:#}", resolve(&t, &l).unwrap_err());
        assert!(e.contains("which is not a deployment directory"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn resolve_refuses_a_dangling_link_and_stays_in_the_sysroot() {
        let (t, l) = sysroot_with_link("dangling", "../../../deploy/rhcos/deploy/CSUM.9");
        let e = format!("{:#}", resolve(&t, &l).unwrap_err());
        assert!(e.contains("is missing"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
        // An absolute link or too many `..` never leaves the sysroot.
        let (t, l) = sysroot_with_link("abs", "/../../../../ostree/deploy/rhcos/deploy/CSUM.0");
        assert!(resolve(&t, &l).is_ok());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
