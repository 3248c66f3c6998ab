//! The step bodies: what each step does to the node (systemd, crictl, crio,
//! SELinux, the trees, etcd, the redeployments), one function per step; the
//! table in `steps.rs` names each step's function and the runner (`mod.rs`)
//! calls it without knowing any of this.

use super::*;
use crate::node::crictl::Crictl;
use crate::node::etcd_restore;
use crate::node::oc::{Get, Oc, Operators};
use std::path::Path;

/// What the preflight reads ahead of each tree the files phase restores,
/// while it checks the backup parts: page cache, not memory of ours, and
/// the kernel drops it first when memory is short.
const READ_AHEAD: u64 = 1 << 30;

impl Ctx<'_> {
    pub(super) fn systemctl(&self, args: &[&str]) -> Result<String> {
        cmd::run_text(self.tools.command("systemctl")?.args(args))
    }

    pub(super) fn is_active(&self, unit: &str) -> Result<bool> {
        // Not active is a non-zero exit with the state on stdout.
        let out = cmd::output(self.tools.command("systemctl")?.args(["is-active", unit]))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "active")
    }

    // One function per step, named in the table of `steps.rs` (`Step::run`).

    pub(super) fn selinux_permissive(&mut self) -> Result<()> {
        if self.j.selinux_mode.is_none() {
            self.j.selinux_mode = Some(self.selinux_mode_to_restore()?);
            self.j.save(self.host)?;
        }
        if self.j.selinux_mode.as_deref() == Some("Disabled") {
            return Ok(());
        }
        cmd::run(self.tools.command("setenforce")?.arg("0")).map(drop)
    }

    pub(super) fn stop_kubelet(&mut self) -> Result<()> {
        self.systemctl(&["stop", "kubelet.service"]).map(drop)
    }

    pub(super) fn remove_pods(&mut self) -> Result<()> {
        if !self.is_active("crio.service")? {
            log::info!("crio is not running: no pods to remove");
            return Ok(());
        }
        Crictl::new(&self.tools).remove_all_pods()
    }

    pub(super) fn stop_crio(&mut self) -> Result<()> {
        self.systemctl(&["stop", "crio.service"]).map(drop)
    }

    pub(super) fn wipe_crio(&mut self) -> Result<()> {
        cmd::run(self.tools.command("crio")?.args(["wipe", "-f"])).map(drop)
    }

    pub(super) fn restore_usr_local(&mut self) -> Result<()> {
        self.restore_tree(StepId::RestoreUsrLocal.as_str(), "local")
    }

    pub(super) fn restore_etc(&mut self) -> Result<()> {
        self.restore_tree(StepId::RestoreEtc.as_str(), "etc")
    }

    pub(super) fn restore_extras(&mut self) -> Result<()> {
        self.restore_tree(StepId::RestoreExtras.as_str(), "extras")
    }

    pub(super) fn daemon_reload(&mut self) -> Result<()> {
        self.systemctl(&["daemon-reload"]).map(drop)
    }

    pub(super) fn disable_kubelet(&mut self) -> Result<()> {
        self.systemctl(&["disable", "kubelet.service"])?;
        // Durable: systemctl removed the wants/ links without a sync.
        durable::fs_of(
            StepId::DisableKubelet.as_str(),
            &self.host.path("/etc/systemd/system"),
        )
    }

    pub(super) fn selinux_restore(&mut self) -> Result<()> {
        match self.j.selinux_mode.as_deref() {
            Some("Enforcing") => cmd::run(self.tools.command("setenforce")?.arg("1")).map(drop),
            _ => Ok(()),
        }
    }

    pub(super) fn restore_kubelet(&mut self) -> Result<()> {
        self.restore_tree(StepId::RestoreKubelet.as_str(), "kubelet")
    }

    pub(super) fn start_crio(&mut self) -> Result<()> {
        if !self.is_active("crio.service")? {
            self.systemctl(&["start", "crio.service"])?;
        }
        Ok(())
    }

    pub(super) fn restore_images(&mut self) -> Result<()> {
        crate::node::images::load(
            self.host,
            &self.tools,
            &self.gen.join(crate::store::layout::IMAGES),
            &self.m.images,
        )
    }

    pub(super) fn record_containers(&mut self) -> Result<()> {
        if self.j.containers.is_empty() {
            self.j.containers = self.containers()?;
            self.j.save(self.host)?;
        }
        Ok(())
    }

    pub(super) fn restart_kubelet(&mut self) -> Result<()> {
        self.systemctl(&["restart", "kubelet.service"]).map(drop)
    }

    pub(super) fn enable_kubelet(&mut self) -> Result<()> {
        self.systemctl(&["enable", "kubelet.service"])?;
        // Durable: the wants/ link systemctl made.
        durable::fs_of(
            StepId::EnableKubelet.as_str(),
            &self.host.path("/etc/systemd/system"),
        )
    }

    pub(super) fn restart_crio(&mut self) -> Result<()> {
        self.systemctl(&["restart", "crio.service"]).map(drop)
    }

    pub(super) fn redeploy_etcd(&mut self) -> Result<()> {
        self.redeploy("etcd")
    }

    pub(super) fn redeploy_kubeapiserver(&mut self) -> Result<()> {
        self.redeploy("kubeapiserver")
    }

    pub(super) fn redeploy_kubecontrollermanager(&mut self) -> Result<()> {
        self.redeploy("kubecontrollermanager")
    }

    pub(super) fn redeploy_kubescheduler(&mut self) -> Result<()> {
        self.redeploy("kubescheduler")
    }

    /// The mode the first run of the files phase recorded for this backup,
    /// else the node's mode now, recorded durably before `setenforce 0`.
    pub(super) fn selinux_mode_to_restore(&self) -> Result<String> {
        if let Some(r) = selinux::recorded(&self.dir, &self.m.created) {
            crate::util::logger::note(
                self.opts.quiet,
                &format!(
                    "SELinux mode to put back: {} (recorded at {} by the first run of this recovery)",
                    r.mode,
                    fsutil::rfc3339(r.at)
                ),
            );
            return Ok(r.mode);
        }
        let out = cmd::run_text(&mut self.tools.command("getenforce")?)?;
        let mode = out.trim();
        if !selinux::valid(mode) {
            bail!("getenforce printed '{mode}', not Enforcing, Permissive or Disabled; nothing was changed");
        }
        selinux::record(&self.dir, mode, &self.m.created)?;
        Ok(mode.to_string())
    }

    /// Before the first change: every part there with its size, the room
    /// the recovery writes in, then every part the whole recovery reads
    /// checked (issue 27.1: a part only the cluster phase reads, damaged
    /// with its size kept, would otherwise stop the recovery after the
    /// reboot, with kubelet disabled and CRI-O wiped): the files phase's
    /// archives in full, the later phases' parts by size and sha256, all in
    /// one pass side by side (`check_parts`, `checks`' doc), then the OS.
    /// The files phase does not read its archives again; the cluster phase
    /// checks its parts in full before its first change.
    pub(super) fn preflight(&mut self) -> Result<()> {
        check_sizes(self.host, &self.gen, &self.m, &self.opts.command(self.host))?;
        checks::require_room(self.host, &self.m)?;
        check_tops(
            self.host,
            &self.m,
            &self.j,
            &ALL_PHASES,
            &self.opts.command(self.host),
        )?;
        // While the parts are checked (decompression and sha256: the
        // CPUs), the trees the files phase restores are read ahead (the
        // disk): the restore reads every target file the archive holds at
        // the same size, to compare it. Issue 25: the check overlapped with
        // reading the target trees. Stopped when the check ends.
        let _ahead: Vec<archive::prefetch::Prefetch> = ["local", "etc"]
            .iter()
            .filter_map(|n| self.m.tree(n))
            .filter_map(|t| {
                archive::restore_top(&self.host.root, &t.source, t.resolved.as_deref()).ok()
            })
            .map(|top| archive::prefetch::Prefetch::ahead(&top, READ_AHEAD))
            .collect();
        check_parts(
            self.host,
            &self.gen,
            &self.m,
            &self.j,
            &ALL_PHASES,
            self.opts.quiet,
            &self.opts.command(self.host),
        )?;
        self.checked.push(Phase::Files);
        self.j.deployment = check_os(self.host, &self.tools, &self.m, self.opts)?;
        Ok(())
    }

    pub(super) fn tree(&self, name: &str) -> Result<&Tree> {
        self.m
            .tree(name)
            .with_context(|| format!("the backup has no {name} tree"))
    }

    pub(super) fn restore_tree(&self, id: &str, name: &str) -> Result<()> {
        let t = self.tree(name)?;
        let archive = self.gen.join(&t.archive);
        let phase = if name == "kubelet" {
            Phase::Cluster
        } else {
            Phase::Files
        };
        let (target, opts) = if t.source == "/" {
            (
                self.host.root.clone(),
                SyncOptions {
                    in_root: true,
                    ..SyncOptions::default()
                },
            )
        } else {
            (
                // Never through a link the backup did not follow.
                archive::restore_top(&self.host.root, &t.source, t.resolved.as_deref())?,
                SyncOptions {
                    excludes: self.excludes(t)?,
                    delete: true,
                    ..SyncOptions::default()
                },
            )
        };
        // The phase check of this run read the archive once already: no
        // second hash here (the sync checks every file's own sha256).
        let st = if self.checked.contains(&phase) {
            archive::sync_tree(&archive, &target, &opts)?
        } else {
            archive::restore_tree(
                &archive,
                &t.stats.sha256,
                t.stats.archive_bytes,
                &target,
                &opts,
            )?
        };
        // Durable: the tree sync ends with a syncfs of the target's file
        // system; the extras lie on several (/etc on the root, others on
        // /var...): each file system touched is synced.
        if t.source == "/" {
            let paths: Vec<PathBuf> = t
                .only
                .iter()
                .flatten()
                .map(|p| self.host.path(p))
                .chain([self.host.root.clone()])
                .collect();
            durable::each_fs(id, paths.iter().map(PathBuf::as_path))?;
        } else {
            durable::fs_of(id, &target)?;
        }
        crate::util::logger::note(
            self.opts.quiet,
            &format!(
                "{}: {} entries, {} written, {} unchanged, {} deleted, {} excluded{}",
                t.source,
                st.entries,
                st.written,
                st.unchanged,
                st.deleted,
                st.excluded,
                if st.skipped_mounts.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", mount points left alone: {}",
                        st.skipped_mounts.join(", ")
                    )
                }
            ),
        );
        Ok(())
    }

    /// What the restore of `t` leaves alone: for /etc, the backup's
    /// `etc.exclude.list` read as rsync reads `--exclude-from` (the admin
    /// may have edited it, as with the old script); without that file, the
    /// list the manifest recorded, with the same meaning.
    pub(super) fn excludes(&self, t: &Tree) -> Result<archive::exclude::Excludes> {
        if t.name != "etc" {
            return Ok(archive::exclude::Excludes::parse(
                t.excludes.join("\n").as_bytes(),
            ));
        }
        match checks::exclude_list(&self.gen).map_err(Fail::Backup)? {
            Some(b) => {
                if let Some(d) = checks::exclude_list_changes(&b, &t.excludes) {
                    log::warn!("{d}");
                }
                Ok(archive::exclude::Excludes::parse(&b))
            }
            None => {
                log::warn!(
                    "{} is not in the backup: using the exclude list recorded in the manifest",
                    crate::store::layout::EXCLUDE_LIST
                );
                Ok(archive::exclude::Excludes::parse(
                    t.excludes.join("\n").as_bytes(),
                ))
            }
        }
    }

    pub(super) fn containers(&self) -> Result<BTreeMap<String, String>> {
        Ok(control_plane(&Crictl::new(&self.tools).ps()?))
    }

    pub(super) fn wait_until(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let mut wait = Waiting::new(self.opts);
        let mut last_err: Option<String>;
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => last_err = None,
                Err(e) => {
                    log::info!("{what}: {e:#}");
                    last_err = Some(format!("{e:#}"));
                }
            }
            let why = last_err
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            wait.again(
                |secs| format!("timed out after {secs}s waiting for {what}{why}"),
                what,
                &why,
            )?;
        }
    }

    pub(super) fn wait_containers(&mut self) -> Result<()> {
        let before = self.j.containers.clone();
        self.wait_until("the control-plane containers to restart", || {
            let now = self.containers()?;
            Ok(CONTAINERS
                .iter()
                .all(|n| now.get(*n).is_some_and(|id| before.get(*n) != Some(id))))
        })
    }

    pub(super) fn restore_etcd(&mut self) -> Result<()> {
        if self.etcd_mode == EtcdRestore::Script {
            let mut c = std::process::Command::new(self.host.path(CLUSTER_RESTORE));
            c.arg(self.gen.join(store::layout::CLUSTER));
            cmd::run_timeout(&mut c, self.opts.wait)?;
            // Durable: what the script restored (etcd data, manifests).
            durable::fs_of("restore-etcd", &self.host.path("/var/lib/etcd"))?;
            return durable::fs_of("restore-etcd", &self.host.path("/etc/kubernetes"));
        }
        let snap = self.gen.join(
            &self
                .m
                .etcd
                .as_ref()
                .context("the backup has no etcd snapshot")?
                .file,
        );
        let res = self.gen.join(
            &self
                .m
                .static_pods
                .as_ref()
                .context("the backup has no static-pod resources")?
                .file,
        );
        let manifest = self.host.path(ETCD_MANIFEST);
        let aside = self.host.path(ETCD_MANIFEST_ASIDE);
        let data = self.host.path("/var/lib/etcd");
        let member = data.join("member");
        let saved = self.host.path("/var/lib/etcd-backup/member");
        let tmp = self.host.path("/var/lib/etcd-restore.tmp");
        // 1. Stop the etcd static pod: its manifest out of the manifests dir.
        self.sub("manifest-aside", |c| {
            if manifest.exists() {
                std::fs::create_dir_all(aside.parent().unwrap())?;
                durable::move_path("manifest-aside", &manifest, &aside, &c.tools)
                    .context("moving the etcd manifest aside")?;
            } else if !aside.exists() {
                bail!(
                    "neither {} nor {} exists",
                    manifest.display(),
                    aside.display()
                );
            }
            // Durable: the rename, in both parent dirs.
            durable::dir("manifest-aside", manifest.parent().unwrap())?;
            durable::dir("manifest-aside", aside.parent().unwrap())
        })?;
        // 2. Wait until every container of the etcd pod is gone
        // (cluster-restore.sh: `wait_for_containers_to_stop` of
        // `etcd etcdctl etcd-metrics etcd-readyz etcd-rev`): the data dir is
        // moved next, and etcd-rev writes revision.json into it.
        self.sub("etcd-stopped", |c| {
            c.wait_until("the etcd pod's containers to stop", || {
                let crictl = Crictl::new(&c.tools);
                for n in etcd_restore::POD_CONTAINERS {
                    if !crictl
                        .ids_labelled(&format!("io.kubernetes.container.name={n}"))?
                        .is_empty()
                    {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
        })?;
        // 3. Keep the current data: /var/lib/etcd/member -> /var/lib/etcd-backup/member;
        // revision.json beside it (the bump is read from there), every other
        // entry of the data dir into extra-data-dir-contents, as
        // cluster-restore.sh does: the restore wants an empty data dir.
        let rev_json = self.host.path(etcd_restore::REV_JSON);
        let rev_saved = self.host.path(etcd_restore::REV_JSON_SAVED);
        let extras = self.host.path(etcd_restore::EXTRAS);
        self.sub("member-saved", |c| {
            if member.exists() {
                if saved.exists() {
                    let old = saved.with_file_name(format!("member.{}", fsutil::unix_now()));
                    std::fs::rename(&saved, &old)?;
                }
                std::fs::create_dir_all(saved.parent().unwrap())?;
                durable::move_path("member-saved", &member, &saved, &c.tools)
                    .context("moving the etcd data aside")?;
            }
            if rev_json.exists() {
                durable::move_path("member-saved", &rev_json, &rev_saved, &c.tools)
                    .context("moving revision.json beside the saved data")?;
            }
            if let Ok(rd) = std::fs::read_dir(&data) {
                for e in rd.flatten() {
                    std::fs::create_dir_all(&extras)?;
                    let to = extras.join(e.file_name());
                    match std::fs::symlink_metadata(&to) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&to)?,
                        Ok(_) => std::fs::remove_file(&to)?,
                        Err(_) => {}
                    }
                    durable::move_path("member-saved", &e.path(), &to, &c.tools).with_context(
                        || format!("moving {} out of the etcd data dir", e.path().display()),
                    )?;
                }
            }
            // Durable: the renames, in both parent dirs.
            for d in [data.as_path(), saved.parent().unwrap(), extras.as_path()] {
                if d.is_dir() {
                    durable::dir("member-saved", d)?;
                }
            }
            Ok(())
        })?;
        // 4. The snapshot into a fresh dir, revisions bumped and marked
        // compacted as the restore pod does, then into place.
        let cfg = etcd::ClientConfig::load(self.host)?;
        self.sub("snapshot-restored", |c| {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)?;
            }
            let name = cfg.name.clone().unwrap_or_else(|| "etcd".into());
            let peer = cfg
                .peer_url
                .clone()
                .unwrap_or_else(|| "https://127.0.0.1:2380".into());
            let prog = etcd_restore::restore_tool(self.host, &c.tools)?;
            let text = match std::fs::read(&rev_saved) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context(format!("reading {}", rev_saved.display())),
            };
            let (bump, why) = etcd_restore::bump(text.as_deref());
            log::info!(
                "etcd restore with {prog}: revisions bumped by {bump} ({why}) and marked compacted"
            );
            let mut e = c.tools.command(prog)?;
            e.env("ETCDCTL_API", "3")
                .arg("snapshot")
                .arg("restore")
                .arg(&snap)
                .arg(format!("--name={name}"))
                .arg(format!("--initial-cluster={name}={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--data-dir={}", tmp.display()))
                .arg("--mark-compacted")
                .arg(format!("--bump-revision={bump}"))
                .current_dir(&c.dir);
            cmd::run(&mut e)?;
            if member.exists() {
                std::fs::remove_dir_all(&member)?;
            }
            std::fs::create_dir_all(&data)?;
            durable::move_path("snapshot-restored", &tmp.join("member"), &member, &c.tools)
                .context("moving the restored member into place")?;
            std::fs::remove_dir_all(&tmp)?;
            // The restore pod copies revision.json back, for a second restore.
            if text.is_some() {
                std::fs::copy(&rev_saved, &rev_json)
                    .context("copying revision.json back into the data dir")?;
            }
            // Durable: the restored member's files, and the renames.
            durable::fs_of("snapshot-restored", &member)?;
            durable::dir("snapshot-restored", &data)?;
            durable::dir("snapshot-restored", tmp.parent().unwrap())
        })?;
        // 5. The static-pod resources of the backup under /etc/kubernetes.
        self.sub("resources-extracted", |c| {
            let dest = c.host.path("/etc/kubernetes");
            cmd::run(
                c.tools
                    .command("tar")?
                    .arg("-C")
                    .arg(&dest)
                    .arg("-xzpf")
                    .arg(&res)
                    .arg("--no-same-owner"),
            )?;
            // Durable: tar wrote the resources without a sync.
            durable::fs_of("resources-extracted", &dest)
        })?;
        // 6. etcd back: its manifest into the manifests dir.
        self.sub("manifest-back", |c| {
            if aside.exists() {
                durable::move_path("manifest-back", &aside, &manifest, &c.tools)
                    .context("putting the etcd manifest back")?;
            }
            // Durable: the rename, in both parent dirs.
            durable::dir("manifest-back", manifest.parent().unwrap())?;
            durable::dir("manifest-back", aside.parent().unwrap())
        })?;
        self.j.etcd_restore.clear();
        Ok(())
    }

    /// A sub-step of the native etcd restore, recorded in the journal.
    pub(super) fn sub(&mut self, id: &str, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        debug_assert!(
            steps::ETCD_SUBSTEPS.contains(&id),
            "{id} not in ETCD_SUBSTEPS"
        );
        if self.j.etcd_restore.iter().any(|s| s == id) {
            return Ok(());
        }
        f(self).with_context(|| format!("etcd restore, {id}"))?;
        fault::point(&format!("restore-etcd:{id}"));
        self.j.etcd_restore.push(id.to_string());
        self.j.save(self.host)
    }

    pub(super) fn oc(&self) -> Oc<'_> {
        Oc::new(self.host, &self.tools)
    }

    pub(super) fn revisions(&self, kind: &str) -> Result<(i64, i64)> {
        self.oc()
            .get::<Operators>(Get::kind(kind))?
            .revisions()
            .with_context(|| format!("oc get {kind}"))
    }

    pub(super) fn redeploy(&mut self, kind: &str) -> Result<()> {
        let target = match self.j.redeploy_targets.get(kind) {
            Some(t) => *t,
            None => {
                let mut latest = 0;
                self.wait_until(&format!("the API server to answer for {kind}"), || {
                    latest = self.revisions(kind)?.1;
                    Ok(true)
                })?;
                let target = latest + 1;
                let reason = format!(
                    "{{\"spec\":{{\"forceRedeploymentReason\":\"recovery-{}\"}}}}",
                    fsutil::unix_now()
                );
                // The target is recorded only once the patch that makes it
                // succeeded: a failed patch is not a redeployment to wait
                // for, and `--resume` patches again.
                self.oc()
                    .patch_merge(kind, "cluster", &reason)
                    .with_context(|| {
                    format!("asking {kind} for a new revision (oc patch {kind} cluster) failed; nothing is recorded, `--resume` asks again")
                })?;
                fault::point(&format!("redeploy-{kind}:patched"));
                self.j.redeploy_targets.insert(kind.to_string(), target);
                self.j.save(self.host)?;
                target
            }
        };
        self.wait_revision(kind, target)
    }

    /// Wait until `kind`'s node runs revision `target`. The progress lines
    /// show the current and the wanted revision; a timeout names the
    /// operator, where it is stuck, and the command to look.
    pub(super) fn wait_revision(&self, kind: &str, target: i64) -> Result<()> {
        let mut wait = Waiting::new(self.opts);
        let look = format!("oc get {kind} cluster -o yaml");
        loop {
            let (now, err) = match self.revisions(kind) {
                Ok((cur, _)) if cur >= target => return Ok(()),
                Ok((cur, latest)) => (
                    format!("at revision {cur}, wanted {target} (latest available {latest})"),
                    None,
                ),
                Err(e) => {
                    log::info!("{kind}: {e:#}");
                    ("revision unknown".to_string(), Some(format!("{e:#}")))
                }
            };
            let why = err
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            wait.again(
                |secs| format!("timed out after {secs}s: {kind} is stuck {now}{why}. Look with `{look}` (status.conditions and status.nodeStatuses say why); once it moves, `{resume}` waits again without a new redeployment. If the revision it asked for never appeared (latest available below {target}), ask again with a new reason: by hand `oc patch {kind} cluster --type merge -p '{{\"spec\":{{\"forceRedeploymentReason\":\"recovery-manual-{}\"}}}}'`, then `{resume}`; or let the recovery do it: `{redo}`", fsutil::unix_now(), resume = self.host.cmd("restore --resume"), redo = self.host.cmd(&format!("restore --resume --redo redeploy-{kind}"))),
                &format!("{kind}: {now}"),
                &why,
            )?;
        }
    }

    /// The recovery is complete: drop what the steps recorded beside the
    /// journal for a later run (the SELinux mode).
    pub(super) fn forget_step_records(&self) -> Result<()> {
        selinux::forget(&self.dir)
    }
}

/// Every part is there with its recorded size (a look, no read); the bytes
/// of each are checked by the phase that reads them.
/// `again` is the run's own command (`restore --restart` after a restart:
/// a plain `restore` is refused while a recovery is under way).
pub(super) fn check_sizes(host: &Host, gen: &Path, m: &Manifest, again: &str) -> Result<()> {
    let all: Vec<&str> = STEPS.iter().map(|s| s.id.as_str()).collect();
    let mut problems = m.missing_parts();
    problems.extend(checks::sizes(gen, &checks::parts_for(m, &all)));
    if !problems.is_empty() {
        return Err(Fail::Backup(format!(
            "the backup in {} is damaged. Nothing was changed. Damaged:\n  {}\nIn an outage: put another copy of the backup in {} and run `{again}`; or take the intact files out with `{}`. `{}` lists every damaged part.",
            host.backup_dir().display(),
            problems.join("\n  "),
            host.dir.display(),
            host.cmd("extract PATH... --to DIR"),
            host.cmd("verify")
        ))
        .into());
    }
    Ok(())
}

/// How to make the booted deployment the default again (no reboot), as
/// exact as this node allows: `ostree admin set-default` where its ostree
/// has it; else `rpm-ostree rollback` where that puts the booted one first
/// (a pending deployment of its stateroot before it and no rollback one
/// after it: rpmostreed-transaction-types.cxx rollback_transaction_execute,
/// "undo a rollback", the rule the rollback table follows too); else what
/// to look at.
fn make_booted_default(os: &ostree::OsState, tools: &Tools) -> String {
    let Some((i, booted)) = os.deployments.iter().enumerate().find(|(_, d)| d.booted) else {
        return "boot the deployment to restore onto as the default first (`ostree admin status` lists them)".into();
    };
    if ostree::has_set_default(tools).unwrap_or(false) {
        return format!(
            "make the booted deployment {} the default with `ostree admin set-default {i}` (no reboot needed)",
            booted.short()
        );
    }
    let own = |d: &&ostree::Deployment| d.stateroot == booted.stateroot;
    // The default is of its stateroot (so pending, before it) and none follows it.
    let after = os.deployments[i + 1..].iter().filter(own).count();
    if after == 0 && os.deployments.first().is_some_and(|d| own(&d)) {
        return format!(
            "make the booted deployment {} the default with `rpm-ostree rollback` (no reboot needed: it puts the booted one first when no rollback deployment stands after it)",
            booted.short()
        );
    }
    format!(
        "make the booted deployment {} (index {i} in `ostree admin status`) the default: this node's ostree has no `ostree admin set-default`, and `rpm-ostree rollback` would not move it here",
        booted.short()
    )
}

/// The active OS deployment is the one the backup pinned (or the admin
/// chose `--restore-onto-other-os`).
/// The booted deployment (the journal records it: `same_os`), when the
/// recovery may start on it.
pub(super) fn check_os(
    host: &Host,
    tools: &Tools,
    m: &Manifest,
    opts: &Options,
) -> Result<Option<crate::node::ostree::DeploymentId>> {
    let os = ostree::read(host, tools)?;
    let booted = os.deployments.iter().find(|d| d.booted).map(|d| d.id());
    let Some(pinned) = &m.deployment else {
        return Ok(booted);
    };
    let active = os.active().context("no OS deployment found")?;
    if active.is(&pinned.id()) {
        // Booted from the boot menu while another is the default: the
        // reboot that ends the files phase would start that other OS, and
        // the cluster phase would run there.
        match os.next_boot_elsewhere() {
            Some(d) => bail!(
                "the pinned deployment {} is booted, but the next boot would start {}: the reboot that ends the files phase would leave the pinned OS. Nothing was changed.\n{}Next: make the pinned deployment the default with `{}` (no reboot needed), then run `{}`.",
                active.short(),
                d.short(),
                state::render_os(&os),
                host.cmd("rollback"),
                host.cmd("restore"),
            ),
            None => return Ok(booted),
        }
    }
    if active.booted && os.default_deployment().is_some_and(|d| d.is(&pinned.id())) {
        // The rollback is done; only its reboot is pending (issue 27.8: not
        // `rollback --reboot` again).
        bail!(
            "the OS rollback is done: the pinned deployment is the next default, but {} is still booted. Nothing was changed.\n{}Next: reboot into the pinned deployment (`systemctl reboot`), then run `{}`.",
            active.short(),
            state::render_os(&os),
            host.cmd("restore"),
        );
    }
    let what = if active.booted { "booted" } else { "default" };
    let pinned_name = format!(
        "{} {}.{} ({})",
        pinned.stateroot,
        pinned.checksum.get(..12).unwrap_or(&pinned.checksum),
        pinned.serial,
        pinned.version.as_deref().unwrap_or("?"),
    );
    if opts.other_os {
        // The files go into the booted deployment's /etc (ostree keeps one
        // per deployment): the reboot that ends the files phase must come
        // back to it.
        if let Some(d) = os.next_boot_elsewhere() {
            bail!(
                "--restore-onto-other-os: the files would be restored into the /etc of {}, but the next boot would start {} (each deployment has its own /etc). Nothing was changed.\n{}Next: {}, then run `{}`.",
                active.short(),
                d.short(),
                state::render_os(&os),
                make_booted_default(&os, tools),
                opts.command(host)
            );
        }
        log::warn!(
            "--restore-onto-other-os: restoring the files of {pinned_name} onto {} ({what}); the node will run files of one OS version on another",
            active.short()
        );
        return Ok(booted);
    }
    if !os.deployments.iter().any(|d| d.is(&pinned.id())) {
        // No rollback can help (the hints report: restore named `rollback
        // --reboot`, which named `restore --force`, which named `rollback
        // --reboot`): the one answer of the state `pinned-deployment-gone`.
        let (text, next) = state::pinned_gone(host, &pinned_name);
        bail!(
            "{text}. {}Nothing was changed.\n{}Next: {next}.",
            if opts.force {
                "--force does not skip this check. "
            } else {
                ""
            },
            state::render_os(&os)
        );
    }
    let forced = if opts.force {
        "--force does not skip this check: it would restore the files of one OS onto another. "
    } else {
        ""
    };
    let msg = format!(
        "the {what} OS deployment is {}, but the backup was taken on {pinned_name}. {forced}Restoring the files of {pinned_name} onto {} would mix OS versions; nothing was changed.\n{}Next: roll the OS back to the pinned deployment with `{}`; after the reboot, run `{}`.",
        active.short(),
        active.short(),
        state::render_os(&os),
        host.cmd("rollback --reboot"),
        host.cmd("restore"),
    );
    if opts.force {
        // Named only to the admin who tried to force it, never as an
        // alternative to the rollback.
        bail!(
            "{msg}\n(Only if the pinned deployment can no longer boot and you accept files of another OS version: `--restore-onto-other-os`.)"
        )
    }
    bail!(msg)
}

/// The clock of a bounded wait (`--wait-timeout`, `--poll-interval`),
/// shared by the waits for the containers and for a revision.
struct Waiting<'o> {
    opts: &'o Options,
    start: Instant,
    last_log: Instant,
}

impl<'o> Waiting<'o> {
    fn new(opts: &'o Options) -> Self {
        let now = Instant::now();
        Waiting {
            opts,
            start: now,
            last_log: now,
        }
    }

    /// Not there yet: past the time limit, the error `timed_out` words (it
    /// gets the limit in seconds); else a note every 30 s that it is still
    /// waiting for `what` (`why`: the last error, if any), then one poll
    /// interval's pause.
    fn again(
        &mut self,
        timed_out: impl FnOnce(u64) -> String,
        what: &str,
        why: &str,
    ) -> Result<()> {
        let limit = self.opts.wait.as_secs();
        if self.start.elapsed() > self.opts.wait {
            bail!("{}", timed_out(limit));
        }
        if self.last_log.elapsed() > Duration::from_secs(30) {
            crate::util::logger::note(
                self.opts.quiet,
                &format!(
                    "still waiting for {what} ({:.0}s of {limit}s){why}",
                    self.start.elapsed().as_secs_f64()
                ),
            );
            self.last_log = Instant::now();
        }
        std::thread::sleep(self.opts.poll);
        Ok(())
    }
}
