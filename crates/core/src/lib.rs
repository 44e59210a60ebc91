//! dualrouter's shared types, below every other crate of the workspace: the config (parsed
//! strictly, then validated section by section into the runtime types), models and their
//! prices, secrets, the conversation as routing reads it, routing policies, the catalog the
//! admin API shows, and the metrics every layer records into. Nothing here does I/O beyond
//! reading the config file.

pub mod catalog;
pub mod config;
pub mod conversation;
pub mod floats;
pub mod metrics;
pub mod policy;

pub use config::{Config, ConfigError, Secret};
