//! upgrade-recovery: pre-upgrade backup and recovery of a single-node OpenShift node.
//!
//! Layers, dependencies pointing down only (docs/architecture.md):
//! `cli` > `commands` > `backup`, `recovery` > `store` > `node` > `archive` > `util`.
//! Only `cli` is public; `testing` is the surface the integration tests use.
mod archive;
mod backup;
pub mod cli;
mod commands;
mod node;
mod recovery;
mod store;
mod util;

/// What the integration tests in `tests/` use of the library (parsers,
/// the archive engine, the step table, the exit codes), under the names they
/// had before the layout: not an API.
#[doc(hidden)]
pub mod testing {
    pub mod archive {
        pub use crate::archive::*;
    }
    pub mod backup {
        pub use crate::backup::parse_currentconfig;
    }
    pub mod error {
        pub use crate::util::error::*;
    }
    pub mod etcd {
        pub use crate::node::etcd::parse_env;
    }
    pub mod images {
        pub use crate::node::images::parse_storage_conf;
    }
    pub mod journal {
        pub use crate::store::journal::*;
    }
    pub mod manifest {
        pub use crate::store::manifest::*;
    }
    pub mod ostree {
        pub use crate::node::ostree::*;
    }
    pub mod report {
        pub use crate::commands::report::{pick, scrub};
    }
    pub mod recovery {
        pub use crate::node::oc::parse_revisions;
        pub use crate::recovery::steps::ETCD_SUBSTEPS;
        pub use crate::recovery::{parse_containers, STEPS};
    }
}
