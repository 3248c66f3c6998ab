//! What the tool reads from the node to know its state.
pub mod booted;
