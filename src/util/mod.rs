//! Small helpers without node knowledge.
pub mod interrupt;
