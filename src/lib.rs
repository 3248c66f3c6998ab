//! upgrade-recovery: pre-upgrade backup and recovery of a single-node OpenShift node.
pub mod archive;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod etcd;
pub mod fsutil;
pub mod host;
pub mod logger;
pub mod manifest;
pub mod ostree;
pub mod status;
pub mod verify;
