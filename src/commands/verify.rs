//! `verify`: check the current backup against its manifest; a typed report,
//! its text, its exit code.

use crate::node::host::Host;
use crate::recovery;
use crate::store::verify::{self, Report};
use crate::util::error::Fail;
use anyhow::Result;

/// Read every part of the current backup once; damage is in the report, not
/// an error.
pub fn run(host: &Host) -> Result<Report> {
    let (m, mut report) = verify::verify(host)?;
    if !report.intact {
        // The way out of a damaged copy of the tool, which the report
        // names beside the other parts.
        let gen = crate::store::current_on(host)?;
        report.way_out = recovery::checks::program_way_out(host, &gen, &m);
    }
    Ok(report)
}

pub fn render(report: &Report, host: &Host) -> String {
    let notes: String = report
        .notes
        .iter()
        .map(|n| format!("note: {n} (the backup itself is usable)\n"))
        .collect();
    if report.intact {
        format!(
            "backup in {} is intact ({} items checked)\n{notes}",
            report.dir,
            report.checked.len()
        )
    } else {
        format!(
            "backup in {} is DAMAGED:\n  {}\n{}{}\nOn a healthy node, replace it with a new backup.\n",
            report.dir,
            report.problems.join("\n  "),
            report
                .way_out
                .as_ref()
                .map(|w| format!("{w}.\n"))
                .unwrap_or_default(),
            recovery::damaged_next(host)
        )
    }
}

/// 0 intact, 4 damaged.
pub fn exit_code(report: &Report) -> i32 {
    if report.intact {
        0
    } else {
        Fail::Backup(String::new()).code()
    }
}
