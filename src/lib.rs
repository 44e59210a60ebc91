//! The `dualrouter` app: the one place a generation of the live state is assembled from the
//! library crates (`docs/architecture.md`). [`live`] builds and swaps the router, store and
//! proxy state; [`server`] runs the Pingora proxy and the admin listener; [`admin`] is the
//! operator's API and dashboard; [`trainer`] refits MIRT on logged outcomes; [`cli`] holds the
//! subcommands; [`demo`] is the local upstream `make run` answers from.

pub mod admin;
pub mod cli;
pub mod demo;
pub mod live;
pub mod logging;
pub mod replay;
pub mod retention;
pub mod server;
pub mod trainer;
