//! The subcommands that are not a layer of their own (backup and recovery are).
pub mod extract;
pub mod ibu;
pub mod job;
pub mod oadp;
pub mod report;
pub mod restore;
pub mod rollback;
pub mod stateroot;
pub mod status;
pub mod tree;
pub mod verify;
