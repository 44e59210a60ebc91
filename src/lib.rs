//! dualrouter: an LLM routing proxy on Pingora.
//!
//! The modules read as the request's path: [`config`] is parsed and validated once,
//! [`proxy`] accepts a request (ingress), forwards it (forward) and streams the answer back
//! (stream); [`admin`] serves the operator's API and metrics; [`error`] chooses every HTTP
//! status in one place.

pub mod admin;
pub mod cli;
pub use dualrouter_core::config;
pub mod demo;
pub use dualrouter_ml::encoder;
pub use dualrouter_ml::eval;
pub mod live;
pub use dualrouter_core::metrics;
pub use dualrouter_ml::mirt;
pub mod server;
pub mod trainer;
