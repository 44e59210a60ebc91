//! Host bindings, one module per WIT version the host speaks (`wit/v0.1.0/` → [`v0_1_0`]).
//! A new version gets its own directory, its own module here and its own entry in
//! [`SUPPORTED_VERSIONS`]; older modules stay so plugins built against them keep loading.

/// The WIT package every plugin is built against.
pub(crate) const PACKAGE: &str = "dualrouter:plugin";

/// The versions of [`PACKAGE`] this host can load, oldest first.
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

/// `dualrouter:plugin@0.1.0`.
pub(crate) mod v0_1_0 {
    /// The `executor` world (and with it every shared interface: types, log, config, process,
    /// http).
    pub(crate) mod executor {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "executor",
        });
    }

    /// The `feature-extractor` world, sharing the executor world's interface bindings.
    pub(crate) mod extractor {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "feature-extractor",
            with: {
                "dualrouter:plugin/types": super::executor::dualrouter::plugin::types,
                "dualrouter:plugin/log": super::executor::dualrouter::plugin::log,
                "dualrouter:plugin/config": super::executor::dualrouter::plugin::config,
            },
        });
    }

    pub(crate) use executor::dualrouter::plugin::{config, http, log, process, types};
}
