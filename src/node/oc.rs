//! The cluster through `oc`: the kubeconfig the node's own API server
//! certificates give (defined here once).

use crate::node::cmd::Tools;
use crate::node::host::Host;
use anyhow::Result;

/// The node's localhost kubeconfig, used unless `KUBECONFIG` is set.
pub const KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig";

/// `oc` with the node's kubeconfig (unless `KUBECONFIG` is set).
pub fn command(host: &Host, tools: &Tools) -> Result<std::process::Command> {
    let mut c = tools.command("oc")?;
    if std::env::var_os("KUBECONFIG").is_none() {
        c.arg(format!("--kubeconfig={}", host.path(KUBECONFIG).display()));
    }
    Ok(c)
}
