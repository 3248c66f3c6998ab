//! upgrade-recovery: pre-upgrade backup and recovery of a single-node OpenShift node.
pub mod archive;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod node;
pub mod recovery;
pub mod store;
pub mod util;

// The flat paths of before the layout, so that moved files compile unchanged
// (this commit is made of renames only); the next commit points every `use`
// at the layer and removes these.
pub use commands::{ibu, job, oadp, report, rollback, stateroot, status};
pub use node::{cmd, etcd, host, images, ostree};
pub use store::{journal, lock, manifest, verify};
pub use util::{error, fault, fsutil, logger, progress};
