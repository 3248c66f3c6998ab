//! What the tool reads from the node to know its state.
pub mod booted;
pub mod cmd;
pub mod crictl;
pub mod etcd;
pub mod etcd_restore;
pub mod host;
pub mod images;
pub mod oc;
pub mod ostree;
