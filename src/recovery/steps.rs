//! The recovery's steps, typed: an id per step (written to the journal as
//! the string of `as_str`, so the journal format is today's), one table with
//! each step's phase, description and flags, and the etcd restore's
//! sub-steps. The runner (`mod.rs`) matches on `StepId` without a wildcard:
//! a step without a body does not compile.

use super::Phase;

/// A step of the recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepId {
    Preflight,
    SelinuxPermissive,
    StopKubelet,
    RemovePods,
    StopCrio,
    WipeCrio,
    RestoreUsrLocal,
    RestoreEtc,
    RestoreExtras,
    DaemonReload,
    DisableKubelet,
    SelinuxRestore,
    ClusterSelinuxPermissive,
    RestoreKubelet,
    StartCrio,
    RestoreImages,
    RecordContainers,
    RestoreEtcd,
    RestartKubelet,
    EnableKubelet,
    RestartCrio,
    WaitContainers,
    ClusterSelinuxRestore,
    RedeployEtcd,
    RedeployKubeapiserver,
    RedeployKubecontrollermanager,
    RedeployKubescheduler,
}

impl StepId {
    /// The id the journal, the fault points and the output use.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepId::Preflight => "preflight",
            StepId::SelinuxPermissive => "selinux-permissive",
            StepId::StopKubelet => "stop-kubelet",
            StepId::RemovePods => "remove-pods",
            StepId::StopCrio => "stop-crio",
            StepId::WipeCrio => "wipe-crio",
            StepId::RestoreUsrLocal => "restore-usr-local",
            StepId::RestoreEtc => "restore-etc",
            StepId::RestoreExtras => "restore-extras",
            StepId::DaemonReload => "daemon-reload",
            StepId::DisableKubelet => "disable-kubelet",
            StepId::SelinuxRestore => "selinux-restore",
            StepId::ClusterSelinuxPermissive => "cluster-selinux-permissive",
            StepId::RestoreKubelet => "restore-kubelet",
            StepId::StartCrio => "start-crio",
            StepId::RestoreImages => "restore-images",
            StepId::RecordContainers => "record-containers",
            StepId::RestoreEtcd => "restore-etcd",
            StepId::RestartKubelet => "restart-kubelet",
            StepId::EnableKubelet => "enable-kubelet",
            StepId::RestartCrio => "restart-crio",
            StepId::WaitContainers => "wait-containers",
            StepId::ClusterSelinuxRestore => "cluster-selinux-restore",
            StepId::RedeployEtcd => "redeploy-etcd",
            StepId::RedeployKubeapiserver => "redeploy-kubeapiserver",
            StepId::RedeployKubecontrollermanager => "redeploy-kubecontrollermanager",
            StepId::RedeployKubescheduler => "redeploy-kubescheduler",
        }
    }

    /// The step a journal id names (None: not a step of this version).
    pub fn parse(id: &str) -> Option<StepId> {
        STEPS.iter().map(|s| s.id).find(|s| s.as_str() == id)
    }
}

/// One step: what the plan shows and what the runner needs to know about it.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub id: StepId,
    pub phase: Phase,
    pub description: &'static str,
    /// The last step of its phase (after the files phase: reboot).
    pub ends_phase: bool,
    /// The first step after the reboot: the run checks the node rebooted.
    pub after_reboot: bool,
}

const fn step(id: StepId, phase: Phase, description: &'static str) -> Step {
    Step {
        id,
        phase,
        description,
        ends_phase: false,
        after_reboot: false,
    }
}

const fn ends_phase(s: Step) -> Step {
    Step {
        ends_phase: true,
        ..s
    }
}

const fn after_reboot(s: Step) -> Step {
    Step {
        after_reboot: true,
        ..s
    }
}

/// The steps, in order.
pub const STEPS: &[Step] = &[
    step(
        StepId::Preflight,
        Phase::Files,
        "verify the backup; the active OS deployment must be the one pinned at backup",
    ),
    step(
        StepId::SelinuxPermissive,
        Phase::Files,
        "record the SELinux mode, then setenforce 0",
    ),
    step(
        StepId::StopKubelet,
        Phase::Files,
        "systemctl stop kubelet.service",
    ),
    step(StepId::RemovePods, Phase::Files, "crictl rmp -fa"),
    step(
        StepId::StopCrio,
        Phase::Files,
        "systemctl stop crio.service",
    ),
    step(StepId::WipeCrio, Phase::Files, "crio wipe -f"),
    step(
        StepId::RestoreUsrLocal,
        Phase::Files,
        "make /usr/local equal the backup",
    ),
    step(
        StepId::RestoreEtc,
        Phase::Files,
        "make /etc equal the backup (etc.exclude.list kept)",
    ),
    step(
        StepId::RestoreExtras,
        Phase::Files,
        "put back the machine-config files outside the trees",
    ),
    step(
        StepId::DaemonReload,
        Phase::Files,
        "systemctl daemon-reload",
    ),
    step(
        StepId::DisableKubelet,
        Phase::Files,
        "systemctl disable kubelet.service",
    ),
    ends_phase(step(
        StepId::SelinuxRestore,
        Phase::Files,
        "put SELinux back in the recorded mode; then reboot",
    )),
    after_reboot(step(
        StepId::ClusterSelinuxPermissive,
        Phase::Cluster,
        "setenforce 0 (after the reboot)",
    )),
    step(
        StepId::RestoreKubelet,
        Phase::Cluster,
        "make /var/lib/kubelet equal the backup",
    ),
    step(
        StepId::StartCrio,
        Phase::Cluster,
        "systemctl start crio.service",
    ),
    step(
        StepId::RestoreImages,
        Phase::Cluster,
        "put the backed-up container images back (none: skipped)",
    ),
    step(
        StepId::RecordContainers,
        Phase::Cluster,
        "record the control-plane container ids",
    ),
    step(
        StepId::RestoreEtcd,
        Phase::Cluster,
        "restore the etcd snapshot and the static-pod resources",
    ),
    step(
        StepId::RestartKubelet,
        Phase::Cluster,
        "systemctl restart kubelet.service",
    ),
    step(
        StepId::EnableKubelet,
        Phase::Cluster,
        "systemctl enable kubelet.service",
    ),
    step(
        StepId::RestartCrio,
        Phase::Cluster,
        "systemctl restart crio.service",
    ),
    step(
        StepId::WaitContainers,
        Phase::Cluster,
        "wait until the five control-plane containers run again",
    ),
    ends_phase(step(
        StepId::ClusterSelinuxRestore,
        Phase::Cluster,
        "put SELinux back in the recorded mode",
    )),
    step(
        StepId::RedeployEtcd,
        Phase::Redeploy,
        "force a redeployment of etcd and wait for it",
    ),
    step(
        StepId::RedeployKubeapiserver,
        Phase::Redeploy,
        "force a redeployment of kube-apiserver and wait for it",
    ),
    step(
        StepId::RedeployKubecontrollermanager,
        Phase::Redeploy,
        "force a redeployment of kube-controller-manager and wait for it",
    ),
    ends_phase(step(
        StepId::RedeployKubescheduler,
        Phase::Redeploy,
        "force a redeployment of kube-scheduler and wait for it",
    )),
];

/// The step that ends `phase`.
pub fn last_of(phase: Phase) -> StepId {
    STEPS
        .iter()
        .find(|s| s.phase == phase && s.ends_phase)
        .map(|s| s.id)
        .expect("every phase has an ending step")
}

/// The phase of a journal id (None: not a step of this version).
pub fn phase_of(id: &str) -> Option<Phase> {
    StepId::parse(id).and_then(|id| STEPS.iter().find(|s| s.id == id).map(|s| s.phase))
}

/// The sub-steps of `restore-etcd`, in order, each journaled on its own
/// (`etcd_restore` in the journal) with a fault point
/// `restore-etcd:<sub-step>`: the crash test reads this table.
pub const ETCD_SUBSTEPS: [&str; 6] = [
    "manifest-aside",
    "etcd-stopped",
    "member-saved",
    "snapshot-restored",
    "resources-extracted",
    "manifest-back",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in STEPS {
            assert!(seen.insert(s.id.as_str()), "{}", s.id.as_str());
            assert_eq!(StepId::parse(s.id.as_str()), Some(s.id));
        }
        assert_eq!(StepId::parse("no-such-step"), None);
    }

    #[test]
    fn each_phase_ends_once_and_in_its_last_step() {
        for phase in [Phase::Files, Phase::Cluster, Phase::Redeploy] {
            let of: Vec<_> = STEPS.iter().filter(|s| s.phase == phase).collect();
            assert_eq!(of.iter().filter(|s| s.ends_phase).count(), 1);
            assert!(of.last().unwrap().ends_phase);
            assert_eq!(last_of(phase), of.last().unwrap().id);
        }
        assert_eq!(last_of(Phase::Files).as_str(), "selinux-restore");
    }

    /// A journal written before the ids were typed (the format is the
    /// same): it loads, its ids are steps, and the recovery continues after
    /// the files phase, at the first step after the reboot.
    #[test]
    fn a_journal_of_before_still_loads_and_continues() {
        let ids: Vec<&str> = STEPS
            .iter()
            .take_while(|s| s.phase == Phase::Files)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(ids.first(), Some(&"preflight"));
        assert_eq!(ids.last(), Some(&"selinux-restore"));
        let completed: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","at":1,"seconds":0.5,"boot_id":"b1"}}"#))
            .collect();
        let text = format!(
            r#"{{"format":1,"tool_version":"0.1.0","started":"2026-11-23T10:00:00Z","backup_created":"2026-11-22T10:00:00Z","completed":[{}],"files_boot_id":"b1","selinux_mode":"Enforcing","etcd_restore":["manifest-aside"]}}"#,
            completed.join(",")
        );
        let dir = std::env::temp_dir().join(format!("ur-steps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(crate::store::journal::FILE), text).unwrap();
        let j = crate::store::journal::Journal::load(&dir).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(j.completed.iter().all(|d| StepId::parse(&d.id).is_some()));
        let next = STEPS.iter().find(|s| !j.is_done(s.id.as_str())).unwrap();
        assert_eq!(next.id, StepId::ClusterSelinuxPermissive);
        assert!(next.after_reboot);
        assert!(ETCD_SUBSTEPS.contains(&j.etcd_restore[0].as_str()));
    }
}
