//! `restore`: the recovery (`recovery/`), its plan with `--dry-run`, and
//! what it prints.

use crate::node::host::Host;
use crate::recovery::{self, steps, Options, Outcome, Phase};
use anyhow::Result;

/// prepare (the read-only checks) -> Plan -> `--dry-run` prints it, the real
/// run carries out the same plan.
pub fn run(host: &Host, opts: &Options) -> Result<Outcome> {
    let plan = recovery::prepare(host, opts)?;
    if opts.dry_run {
        plan.dry_run()
    } else {
        plan.execute()
    }
}

pub fn render(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match o {
        Outcome::DryRun { steps, next } => {
            let _ = writeln!(
                s,
                "Recovery plan (the checks before the first change passed; nothing is changed by --dry-run):"
            );
            let mut phase = None;
            for st in steps {
                if phase != Some(st.phase) {
                    let _ = writeln!(s, "phase {}:", st.phase.name());
                    phase = Some(st.phase);
                }
                let _ = writeln!(
                    s,
                    "  [{}] {:<32} {}",
                    if st.done { "x" } else { " " },
                    st.id,
                    st.description
                );
                if st.id == steps::last_of(Phase::Files).as_str() {
                    let _ = writeln!(
                        s,
                        "  --- reboot (systemctl reboot), then restore --resume ---"
                    );
                }
            }
            let _ = writeln!(s, "Next: carry it out with `{next}`.");
        }
        Outcome::RebootNow { next, .. } => {
            let _ = writeln!(
                s,
                "Phase files is done: /usr/local, /etc and the machine-config files are restored, kubelet is disabled.\n{next}"
            );
        }
        Outcome::PhaseDone { next, .. } => {
            let _ = writeln!(s, "{next}");
        }
        Outcome::Done { steps, seconds } => {
            let _ = writeln!(
                s,
                "Recovery complete ({:.0}s in this run). Time per step:",
                seconds
            );
            for d in steps {
                let _ = writeln!(s, "  {:<32} {:>7.1}s", d.id, d.seconds);
            }
            let _ = writeln!(
                s,
                "The node runs the pre-upgrade state. Check with `oc get co` and `oc get nodes`."
            );
        }
    }
    s
}
