//! The `mirt:` section: the checkpoint, the objective, refits, the encoder.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `mirt:` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirtSettings {
    /// Checkpoint file (`dualrouter train` writes one).
    #[serde(default = "default_checkpoint")]
    pub checkpoint: PathBuf,
    /// Objective knob: maximise P − cost_weight · price / (dearest model's price).
    #[serde(default = "default_cost_weight")]
    pub cost_weight: f64,
    /// If set, the objective is instead "the cheapest candidate with P ≥ target".
    #[serde(default)]
    pub target: Option<f64>,
    /// How often to refit on logged outcomes (e.g. `30m`, `24h`); off when unset. A refit
    /// is activated only if it is no worse than the active checkpoint on the held-out slice.
    #[serde(default)]
    pub retrain_every: Option<String>,
    /// Outcome data (a file `dualrouter train` reads) that refits start from, beside the
    /// logged outcomes. Its `test` split joins the held-out slice.
    #[serde(default)]
    pub base_data: Option<PathBuf>,
    /// Where refits write their checkpoints (`v{version}.json`).
    #[serde(default = "default_checkpoints_dir")]
    pub checkpoints_dir: PathBuf,
    /// Share of logged decisions (by the hash of their id, so always the same ones) kept out of
    /// training to judge checkpoints on.
    #[serde(default = "default_holdout_percent")]
    pub holdout_percent: u32,
    /// Fewest logged outcomes a refit needs (without them it would only repeat the base data).
    #[serde(default = "default_min_outcomes")]
    pub min_outcomes: usize,
    /// The prompt encoder (must match the checkpoint's encoder id).
    #[serde(default)]
    pub encoder: super::encoder::EncoderConfig,
    /// Trying models the checkpoint knows little about (off by default).
    #[serde(default)]
    pub exploration: ExplorationSettings,
}

/// How a model's ability is explored (`mirt.exploration`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExplorePolicy {
    /// Never: the objective's best candidate, always.
    #[default]
    Off,
    /// Thompson sampling: each candidate's logit of P is drawn from N(logit P, (scale/√(1+n))²),
    /// n its outcomes; the best under the draws is tried.
    Thompson,
    /// Optimism: each candidate's logit of P is raised by scale/√(1+n).
    Ucb,
}

/// The `mirt.exploration:` section: a bounded policy for trying models with few outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExplorationSettings {
    #[serde(default)]
    pub policy: ExplorePolicy,
    /// Width of the uncertainty of a model without outcomes, in logits of P.
    #[serde(default = "default_explore_scale")]
    pub scale: f64,
    /// Most of the routed requests exploration may send elsewhere than the objective's best.
    #[serde(default = "default_explore_share")]
    pub max_traffic_share: f64,
    /// Most of the (estimated) spend of routed requests exploration may account for.
    #[serde(default = "default_explore_share")]
    pub max_spend_share: f64,
    /// Seed of the draws (Thompson sampling).
    #[serde(default)]
    pub seed: u64,
}

fn default_explore_scale() -> f64 {
    2.0
}
fn default_explore_share() -> f64 {
    0.1
}

impl Default for ExplorationSettings {
    fn default() -> Self {
        Self {
            policy: ExplorePolicy::Off,
            scale: default_explore_scale(),
            max_traffic_share: default_explore_share(),
            max_spend_share: default_explore_share(),
            seed: 0,
        }
    }
}

impl ExplorationSettings {
    /// Check values; errors name the field path under `mirt.exploration`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.scale.is_finite() || self.scale < 0.0 {
            return Err(format!(
                "mirt.exploration.scale: must be a finite number ≥ 0, got {}",
                self.scale
            ));
        }
        for (name, v) in [
            ("max_traffic_share", self.max_traffic_share),
            ("max_spend_share", self.max_spend_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "mirt.exploration.{name}: must be in [0, 1], got {v}"
                ));
            }
        }
        Ok(())
    }
}

fn default_checkpoint() -> PathBuf {
    PathBuf::from("checkpoints/default.json")
}
fn default_cost_weight() -> f64 {
    0.2
}
fn default_checkpoints_dir() -> PathBuf {
    PathBuf::from("checkpoints/trained")
}
fn default_holdout_percent() -> u32 {
    10
}
fn default_min_outcomes() -> usize {
    20
}

/// A duration written as a number and a unit: `90s`, `30m`, `24h`, `7d`.
pub fn parse_interval(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' has no unit (s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' does not start with a whole number"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (s, m, h or d)")),
    };
    if secs == 0 {
        return Err(format!("'{s}' must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

impl Default for MirtSettings {
    fn default() -> Self {
        Self {
            checkpoint: default_checkpoint(),
            cost_weight: default_cost_weight(),
            target: None,
            retrain_every: None,
            base_data: None,
            checkpoints_dir: default_checkpoints_dir(),
            holdout_percent: default_holdout_percent(),
            min_outcomes: default_min_outcomes(),
            encoder: super::encoder::EncoderConfig::default(),
            exploration: ExplorationSettings::default(),
        }
    }
}

impl MirtSettings {
    /// Check values; errors name the field path under `mirt`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.cost_weight.is_finite() || self.cost_weight < 0.0 {
            return Err(format!(
                "mirt.cost_weight: must be a finite number ≥ 0, got {}",
                self.cost_weight
            ));
        }
        if let Some(t) = self.target {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("mirt.target: must be in [0, 1], got {t}"));
            }
        }
        if let Some(every) = &self.retrain_every {
            parse_interval(every).map_err(|e| format!("mirt.retrain_every: {e}"))?;
        }
        if self.holdout_percent > 50 {
            return Err(format!(
                "mirt.holdout_percent: must be in 0..=50, got {}",
                self.holdout_percent
            ));
        }
        self.exploration.validate()?;
        self.encoder
            .validate()
            .map_err(|e| format!("mirt.encoder: {e}"))
    }

    pub fn objective(&self) -> Objective {
        match self.target {
            Some(t) => Objective::CheapestAbove(t),
            None => Objective::CostWeight(self.cost_weight),
        }
    }
}

/// What a router optimises when it picks among candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Maximise P − w · price / cost_ref.
    CostWeight(f64),
    /// The cheapest candidate with P ≥ target; if none reaches it, the most likely to succeed.
    CheapestAbove(f64),
}

#[cfg(test)]
mod exploration_tests {
    use super::*;

    #[test]
    fn exploration_is_off_by_default_and_validated() {
        let s: MirtSettings = serde_yaml_ng::from_str("cost_weight: 0.1\n").unwrap();
        assert_eq!(s.exploration.policy, ExplorePolicy::Off);
        let s: MirtSettings = serde_yaml_ng::from_str(
            "exploration: { policy: thompson, scale: 1.5, max_traffic_share: 0.2 }\n",
        )
        .unwrap();
        assert_eq!(s.exploration.policy, ExplorePolicy::Thompson);
        assert_eq!(s.exploration.max_spend_share, 0.1);
        assert!(s.validate().is_ok());
        assert!(
            serde_yaml_ng::from_str::<MirtSettings>("exploration: { policy: greedy }\n").is_err()
        );
        assert!(serde_yaml_ng::from_str::<MirtSettings>("exploration: { shares: 1 }\n").is_err());
        let mut bad = MirtSettings::default();
        bad.exploration.max_spend_share = 1.5;
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("mirt.exploration.max_spend_share"));
        bad.exploration.max_spend_share = 0.1;
        bad.exploration.scale = -1.0;
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("mirt.exploration.scale"));
    }
}
