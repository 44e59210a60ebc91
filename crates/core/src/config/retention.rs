//! The `retention:` section: how long decisions and feedback are kept, how they are pruned,
//! and whether prompt embeddings are stored with decisions.

use serde::{Deserialize, Serialize};

/// The `retention:` section of the config file. Applied by reloads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Decisions (`routing_decisions` rows) older than this many days are deleted; 0 keeps them.
    #[serde(default = "default_days")]
    pub decisions_days: u32,
    /// Feedback rows older than this many days are deleted; 0 keeps them.
    #[serde(default = "default_days")]
    pub feedback_days: u32,
    /// Most rows one pruning statement deletes; pruning goes on in such batches, with a pause
    /// between them so the decision-log writer is never held up for long.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: u32,
    /// How often pruning runs, in seconds.
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// Store each routed decision's prompt embedding (and plugin features): what refits learn
    /// from. `false`: decisions are logged without them, and new decisions teach MIRT nothing.
    #[serde(default = "default_true")]
    pub store_embeddings: bool,
}

fn default_days() -> u32 {
    90
}
fn default_batch_rows() -> u32 {
    500
}
fn default_interval_s() -> u64 {
    300
}
fn default_true() -> bool {
    true
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            decisions_days: default_days(),
            feedback_days: default_days(),
            batch_rows: default_batch_rows(),
            interval_s: default_interval_s(),
            store_embeddings: true,
        }
    }
}

impl RetentionSettings {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=100_000).contains(&self.batch_rows) {
            out.push("retention.batch_rows: must be in 1..=100000".into());
        }
        if self.interval_s == 0 {
            out.push("retention.interval_s: must be at least 1".into());
        }
        for (name, days) in [
            ("decisions_days", self.decisions_days),
            ("feedback_days", self.feedback_days),
        ] {
            if days > 36_500 {
                out.push(format!(
                    "retention.{name}: at most 36500 (100 years); 0 keeps rows forever"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let d: RetentionSettings = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(d, RetentionSettings::default());
        assert_eq!(d.decisions_days, 90);
        assert!(d.store_embeddings);
        assert!(d.problems().is_empty());
        let bad = RetentionSettings {
            batch_rows: 0,
            interval_s: 0,
            ..d
        };
        assert_eq!(bad.problems().len(), 2);
        assert!(serde_yaml_ng::from_str::<RetentionSettings>("decision_days: 3").is_err());
    }
}
