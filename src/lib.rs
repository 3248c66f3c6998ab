//! upgrade-recovery: pre-upgrade backup and recovery of a single-node OpenShift node.
pub mod archive;
pub mod backup;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod etcd;
pub mod fault;
pub mod fsutil;
pub mod host;
pub mod job;
pub mod lock;
pub mod logger;
pub mod manifest;
pub mod ostree;
pub mod progress;
pub mod status;
pub mod verify;
