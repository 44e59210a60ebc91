//! The `reload:` section: watching the config file and resyncing policies.

use serde::{Deserialize, Serialize};

/// The `reload:` section of the config file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReloadSettings {
    /// Watch the config file and apply its changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How often the file is checked.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// How long a changed file must stay unchanged before it is applied (editors write twice).
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// How often the policies are compared with the store, in case a notification was missed.
    #[serde(default = "default_resync_ms")]
    pub resync_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_poll_ms() -> u64 {
    500
}
fn default_debounce_ms() -> u64 {
    300
}
fn default_resync_ms() -> u64 {
    30_000
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            watch: true,
            poll_ms: default_poll_ms(),
            debounce_ms: default_debounce_ms(),
            resync_ms: default_resync_ms(),
        }
    }
}

impl ReloadSettings {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, v) in [("poll_ms", self.poll_ms), ("resync_ms", self.resync_ms)] {
            if v == 0 {
                out.push(format!("reload.{name}: must be at least 1"));
            }
        }
        out
    }
}
