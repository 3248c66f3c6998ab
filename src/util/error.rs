//! Failures that map to the exit codes of the command-line contract.
//!
//! 0 done, 1 failed, 2 usage error, 3 a recovery is already in progress,
//! 4 backup missing or damaged. Any error without one of these kinds is 1.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Fail {
    /// Wrong arguments or a root that is not a node.
    #[error("{0}")]
    Usage(String),
    /// A recovery is in progress and the run did not say --resume or --restart.
    #[error("{0}")]
    InProgress(String),
    /// No backup, or a backup that does not match its manifest.
    #[error("{0}")]
    Backup(String),
}

impl Fail {
    pub fn code(&self) -> i32 {
        match self {
            Fail::Usage(_) => 2,
            Fail::InProgress(_) => 3,
            Fail::Backup(_) => 4,
        }
    }
}

/// The exit code for an error chain: the first `Fail` in it decides, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Fail>())
        .map_or(1, Fail::code)
}

/// A new error with `text` that keeps the exit code of `err`.
pub fn with_code_of(err: &anyhow::Error, text: String) -> anyhow::Error {
    match exit_code(err) {
        2 => Fail::Usage(text).into(),
        3 => Fail::InProgress(text).into(),
        4 => Fail::Backup(text).into(),
        _ => anyhow::anyhow!(text),
    }
}

/// Whether the chain holds a full file system (ENOSPC, or EDQUOT: a quota
/// reached reads the same to the admin).
pub fn no_space(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|c| c == libc_enospc() || c == libc_edquot())
    })
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}
