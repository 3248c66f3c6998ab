//! Small helpers without node knowledge.
pub mod durable;
pub mod error;
pub mod fault;
pub mod fsutil;
pub mod interrupt;
pub mod json;
pub mod logger;
pub mod progress;
