//! The recovery's steps, typed: an id per step (written to the journal as
//! the string of `as_str`, so the journal format is today's), one table
//! (`StepId::spec`) with each step's phase, description, flags and the
//! function that runs it, and the etcd restore's sub-steps.
//!
//! Nothing here can be forgotten: `spec` matches on `StepId` without a
//! wildcard (a step without a spec, hence without a function, does not
//! compile), and `STEPS`, the order the runner follows, is written by the
//! same macro as the enum (every step once, in the enum's order).

use super::{Ctx, Phase};
use anyhow::Result;

/// Declares `StepId` with its journal ids, and `STEPS` in the same order.
macro_rules! step_ids {
    ($($variant:ident => $id:literal,)*) => {
        /// A step of the recovery; the order of the variants is the run's.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StepId {
            $($variant,)*
        }

        impl StepId {
            /// The id the journal, the fault points and the output use.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(StepId::$variant => $id,)*
                }
            }
        }

        /// The steps, in order.
        pub const STEPS: &[Step] = &[$(StepId::$variant.spec(),)*];
    };
}

step_ids! {
    Preflight => "preflight",
    SelinuxPermissive => "selinux-permissive",
    StopKubelet => "stop-kubelet",
    RemovePods => "remove-pods",
    StopCrio => "stop-crio",
    WipeCrio => "wipe-crio",
    RestoreUsrLocal => "restore-usr-local",
    RestoreEtc => "restore-etc",
    RestoreExtras => "restore-extras",
    DaemonReload => "daemon-reload",
    DisableKubelet => "disable-kubelet",
    SelinuxRestore => "selinux-restore",
    ClusterSelinuxPermissive => "cluster-selinux-permissive",
    RestoreKubelet => "restore-kubelet",
    StartCrio => "start-crio",
    RestoreImages => "restore-images",
    RecordContainers => "record-containers",
    RestoreEtcd => "restore-etcd",
    RestartKubelet => "restart-kubelet",
    EnableKubelet => "enable-kubelet",
    RestartCrio => "restart-crio",
    WaitContainers => "wait-containers",
    ClusterSelinuxRestore => "cluster-selinux-restore",
    RedeployEtcd => "redeploy-etcd",
    RedeployKubeapiserver => "redeploy-kubeapiserver",
    RedeployKubecontrollermanager => "redeploy-kubecontrollermanager",
    RedeployKubescheduler => "redeploy-kubescheduler",
}

// Each spec is the one of its id (checked when the crate compiles).
const _: () = {
    let mut i = 0;
    while i < STEPS.len() {
        assert!(STEPS[i].id as usize == i);
        i += 1;
    }
};

/// The function that carries out a step (the bodies are in `bodies.rs`).
pub(super) type Run = for<'c, 'a> fn(&'c mut Ctx<'a>) -> Result<()>;

/// One step: what the plan shows, what the runner needs to know about it,
/// and the function that does it.
#[derive(Clone, Copy)]
pub struct Step {
    pub id: StepId,
    pub phase: Phase,
    pub description: &'static str,
    /// The last step of its phase (after the files phase: reboot).
    pub ends_phase: bool,
    /// The first step after the reboot: the run checks the node rebooted.
    pub after_reboot: bool,
    /// What the step does to the node.
    pub(super) run: Run,
}

const fn step(id: StepId, phase: Phase, description: &'static str, run: Run) -> Step {
    Step {
        id,
        phase,
        description,
        ends_phase: false,
        after_reboot: false,
        run,
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

impl StepId {
    /// The step a journal id names (None: not a step of this version).
    pub fn parse(id: &str) -> Option<StepId> {
        STEPS.iter().map(|s| s.id).find(|s| s.as_str() == id)
    }

    /// The table of the steps: phase, description, flags, function.
    pub const fn spec(self) -> Step {
        use Phase::{Cluster, Files, Redeploy};
        use StepId as S;
        match self {
            S::Preflight => step(
                S::Preflight,
                Files,
                "verify the backup; the active OS deployment must be the one pinned at backup",
                |c| c.preflight(),
            ),
            S::SelinuxPermissive => step(
                S::SelinuxPermissive,
                Files,
                "record the SELinux mode, then setenforce 0",
                |c| c.selinux_permissive(),
            ),
            S::StopKubelet => step(
                S::StopKubelet,
                Files,
                "systemctl stop kubelet.service",
                |c| c.stop_kubelet(),
            ),
            S::RemovePods => step(S::RemovePods, Files, "crictl rmp -fa", |c| c.remove_pods()),
            S::StopCrio => step(S::StopCrio, Files, "systemctl stop crio.service", |c| {
                c.stop_crio()
            }),
            S::WipeCrio => step(S::WipeCrio, Files, "crio wipe -f", |c| c.wipe_crio()),
            S::RestoreUsrLocal => step(
                S::RestoreUsrLocal,
                Files,
                "make /usr/local equal the backup",
                |c| c.restore_usr_local(),
            ),
            S::RestoreEtc => step(
                S::RestoreEtc,
                Files,
                "make /etc equal the backup (etc.exclude.list kept)",
                |c| c.restore_etc(),
            ),
            S::RestoreExtras => step(
                S::RestoreExtras,
                Files,
                "put back the machine-config files outside the trees",
                |c| c.restore_extras(),
            ),
            S::DaemonReload => step(S::DaemonReload, Files, "systemctl daemon-reload", |c| {
                c.daemon_reload()
            }),
            S::DisableKubelet => step(
                S::DisableKubelet,
                Files,
                "systemctl disable kubelet.service",
                |c| c.disable_kubelet(),
            ),
            S::SelinuxRestore => ends_phase(step(
                S::SelinuxRestore,
                Files,
                "put SELinux back in the recorded mode; then reboot",
                |c| c.selinux_restore(),
            )),
            S::ClusterSelinuxPermissive => after_reboot(step(
                S::ClusterSelinuxPermissive,
                Cluster,
                "setenforce 0 (after the reboot)",
                |c| c.selinux_permissive(),
            )),
            S::RestoreKubelet => step(
                S::RestoreKubelet,
                Cluster,
                "make /var/lib/kubelet equal the backup",
                |c| c.restore_kubelet(),
            ),
            S::StartCrio => step(S::StartCrio, Cluster, "systemctl start crio.service", |c| {
                c.start_crio()
            }),
            S::RestoreImages => step(
                S::RestoreImages,
                Cluster,
                "put the backed-up container images back (none: skipped)",
                |c| c.restore_images(),
            ),
            S::RecordContainers => step(
                S::RecordContainers,
                Cluster,
                "record the control-plane container ids",
                |c| c.record_containers(),
            ),
            S::RestoreEtcd => step(
                S::RestoreEtcd,
                Cluster,
                "restore the etcd snapshot and the static-pod resources",
                |c| c.restore_etcd(),
            ),
            S::RestartKubelet => step(
                S::RestartKubelet,
                Cluster,
                "systemctl restart kubelet.service",
                |c| c.restart_kubelet(),
            ),
            S::EnableKubelet => step(
                S::EnableKubelet,
                Cluster,
                "systemctl enable kubelet.service",
                |c| c.enable_kubelet(),
            ),
            S::RestartCrio => step(
                S::RestartCrio,
                Cluster,
                "systemctl restart crio.service",
                |c| c.restart_crio(),
            ),
            S::WaitContainers => step(
                S::WaitContainers,
                Cluster,
                "wait until the five control-plane containers run again",
                |c| c.wait_containers(),
            ),
            S::ClusterSelinuxRestore => ends_phase(step(
                S::ClusterSelinuxRestore,
                Cluster,
                "put SELinux back in the recorded mode",
                |c| c.selinux_restore(),
            )),
            S::RedeployEtcd => step(
                S::RedeployEtcd,
                Redeploy,
                "force a redeployment of etcd and wait for it",
                |c| c.redeploy_etcd(),
            ),
            S::RedeployKubeapiserver => step(
                S::RedeployKubeapiserver,
                Redeploy,
                "force a redeployment of kube-apiserver and wait for it",
                |c| c.redeploy_kubeapiserver(),
            ),
            S::RedeployKubecontrollermanager => step(
                S::RedeployKubecontrollermanager,
                Redeploy,
                "force a redeployment of kube-controller-manager and wait for it",
                |c| c.redeploy_kubecontrollermanager(),
            ),
            S::RedeployKubescheduler => ends_phase(step(
                S::RedeployKubescheduler,
                Redeploy,
                "force a redeployment of kube-scheduler and wait for it",
                |c| c.redeploy_kubescheduler(),
            )),
        }
    }
}

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
    StepId::parse(id).map(|id| id.spec().phase)
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

    /// The order and the ids of the journals written before the table held
    /// the functions: a journal of then resumes at the same step.
    #[test]
    fn the_order_and_ids_are_the_journals() {
        let ids: Vec<&str> = STEPS.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "preflight",
                "selinux-permissive",
                "stop-kubelet",
                "remove-pods",
                "stop-crio",
                "wipe-crio",
                "restore-usr-local",
                "restore-etc",
                "restore-extras",
                "daemon-reload",
                "disable-kubelet",
                "selinux-restore",
                "cluster-selinux-permissive",
                "restore-kubelet",
                "start-crio",
                "restore-images",
                "record-containers",
                "restore-etcd",
                "restart-kubelet",
                "enable-kubelet",
                "restart-crio",
                "wait-containers",
                "cluster-selinux-restore",
                "redeploy-etcd",
                "redeploy-kubeapiserver",
                "redeploy-kubecontrollermanager",
                "redeploy-kubescheduler",
            ]
        );
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
