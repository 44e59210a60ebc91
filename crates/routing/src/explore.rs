//! Step 4's choice among scored candidates: the objective's order ([`dualrouter_ml::mirt::rank`]),
//! and, when `mirt.exploration` is on, sometimes another candidate first, to learn its ability.
//!
//! A candidate's uncertainty is `scale / √(1 + n)` logits of P, n the outcomes its ability was
//! fitted on (0 for a cold model) plus the times it was chosen since the checkpoint was
//! activated. Thompson sampling draws each candidate's logit from that width; optimism (UCB)
//! adds the width. When the best candidate under the draws is not the objective's best, it is
//! tried first (`explore: true`), but only while the explored requests stay within
//! `max_traffic_share` of the routed ones and their estimated cost within `max_spend_share` of
//! the estimated spend. Off, [`Explorer::select`] is the objective's order and nothing else.

use std::collections::HashMap;
use std::sync::Mutex;

use dualrouter_core::config::mirt::{ExplorationSettings, ExplorePolicy};
use dualrouter_ml::mirt::model::Rng;
use dualrouter_ml::mirt::{rank, Objective};

/// The chosen order of the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Candidate indices, the one to try first first.
    pub order: Vec<usize>,
    /// The first was chosen by exploration, not by the objective.
    pub explore: bool,
}

/// What the explorer has done since it was made (or its counts were last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExploreStats {
    pub routed: u64,
    pub explored: u64,
    /// Estimated USD of every routed request's first choice.
    pub spend: f64,
    /// The part of `spend` that exploration chose.
    pub explore_spend: f64,
}

struct State {
    rng: Rng,
    stats: ExploreStats,
    /// Times each model was chosen since the active checkpoint was activated.
    tries: HashMap<String, u64>,
}

/// The exploration policy and its running counts (one per router; shared by its requests).
pub struct Explorer {
    settings: ExplorationSettings,
    state: Mutex<State>,
}

impl std::fmt::Debug for Explorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explorer")
            .field("policy", &self.settings.policy)
            .finish()
    }
}

/// One candidate as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub model: &'a str,
    /// MIRT's P(success).
    pub p: f32,
    /// Estimated cost of the request on this model, USD (the objective's price).
    pub cost: f64,
    /// Outcomes the active checkpoint fitted this model's ability on (0: cold).
    pub outcomes: usize,
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

impl Explorer {
    pub fn new(settings: &ExplorationSettings) -> Self {
        Self {
            settings: settings.clone(),
            state: Mutex::new(State {
                rng: Rng::new(settings.seed),
                stats: ExploreStats::default(),
                tries: HashMap::new(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.policy != ExplorePolicy::Off
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> ExploreStats {
        self.lock().stats
    }

    /// A new checkpoint was activated: its outcome counts replace the tries counted so far.
    pub fn checkpoint_changed(&self) {
        self.lock().tries.clear();
    }

    /// The order to try `candidates` in under `objective` (`cost_ref`: the objective's price
    /// scale), and whether exploration chose the first.
    pub fn select(
        &self,
        candidates: &[Scored<'_>],
        cost_ref: f64,
        objective: Objective,
    ) -> Selection {
        let p: Vec<f32> = candidates.iter().map(|c| c.p).collect();
        let cost: Vec<f64> = candidates.iter().map(|c| c.cost).collect();
        let order = rank(&p, &cost, cost_ref, objective);
        if !self.enabled() || order.is_empty() {
            return Selection {
                order,
                explore: false,
            };
        }
        let mut st = self.lock();
        let drawn: Vec<f32> = candidates
            .iter()
            .map(|c| {
                let n = c.outcomes as f64 + st.tries.get(c.model).copied().unwrap_or(0) as f64;
                let width = self.settings.scale / (1.0 + n).sqrt();
                let shift = match self.settings.policy {
                    ExplorePolicy::Thompson => width * st.rng.normal(),
                    ExplorePolicy::Ucb => width,
                    ExplorePolicy::Off => 0.0,
                };
                (1.0 / (1.0 + (-(logit(c.p) + shift)).exp())) as f32
            })
            .collect();
        let best = order[0];
        let alt = rank(&drawn, &cost, cost_ref, objective)
            .first()
            .copied()
            .unwrap_or(best);
        let s = st.stats;
        let explore = alt != best
            && (s.explored + 1) as f64 <= self.settings.max_traffic_share * (s.routed + 1) as f64
            && s.explore_spend + cost[alt]
                <= self.settings.max_spend_share * (s.spend + cost[alt]) + f64::EPSILON;
        let chosen = if explore { alt } else { best };
        st.stats.routed += 1;
        st.stats.spend += cost[chosen];
        if explore {
            st.stats.explored += 1;
            st.stats.explore_spend += cost[chosen];
        }
        *st.tries
            .entry(candidates[chosen].model.to_string())
            .or_default() += 1;
        drop(st);
        let order = if explore {
            std::iter::once(alt)
                .chain(order.into_iter().filter(|&i| i != alt))
                .collect()
        } else {
            order
        };
        Selection { order, explore }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: ExplorePolicy, traffic: f64, spend: f64) -> ExplorationSettings {
        ExplorationSettings {
            policy,
            scale: 3.0,
            max_traffic_share: traffic,
            max_spend_share: spend,
            seed: 7,
        }
    }

    fn cands<'a>(names: &'a [&'a str], p: &[f32], cost: &[f64], n: &[usize]) -> Vec<Scored<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, m)| Scored {
                model: m,
                p: p[i],
                cost: cost[i],
                outcomes: n[i],
            })
            .collect()
    }

    #[test]
    fn off_is_the_objectives_order() {
        let e = Explorer::new(&ExplorationSettings::default());
        let names = ["a", "b", "c"];
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let p: Vec<f32> = (0..3).map(|_| rng.uniform() as f32).collect();
            let cost: Vec<f64> = (0..3).map(|_| rng.uniform()).collect();
            let c = cands(&names, &p, &cost, &[0, 0, 0]);
            let obj = Objective::CostWeight(0.3);
            let s = e.select(&c, 1.0, obj);
            assert_eq!(s.order, rank(&p, &cost, 1.0, obj));
            assert!(!s.explore);
        }
        assert_eq!(e.stats(), ExploreStats::default());
    }

    #[test]
    fn caps_hold_for_traffic_and_spend() {
        // A cold dear model beside a well-known cheap one: exploration wants the dear one.
        let names = ["cheap", "dear"];
        // Nearly as likely as the cheap one: optimism keeps wanting it for the whole run (its
        // width stays above the gap while it has fewer than ~1,700 tries).
        let c = cands(&names, &[0.6, 0.59], &[1.0, 10.0], &[10_000, 0]);
        for (traffic, spend) in [(0.05, 1.0), (1.0, 0.2), (0.3, 0.3), (0.0, 1.0)] {
            for policy in [ExplorePolicy::Thompson, ExplorePolicy::Ucb] {
                let e = Explorer::new(&settings(policy, traffic, spend));
                for _ in 0..2_000 {
                    e.select(&c, 10.0, Objective::CostWeight(0.0));
                    let s = e.stats();
                    assert!(
                        s.explored as f64 <= traffic * s.routed as f64 + 1e-9,
                        "{s:?}"
                    );
                    assert!(s.explore_spend <= spend * s.spend + 1e-9, "{s:?}");
                }
                let s = e.stats();
                // Each cap binds: the other is loose, so exploration uses what it may.
                if traffic > 0.0 && policy == ExplorePolicy::Ucb {
                    let share = s.explored as f64 / s.routed as f64;
                    let spend_share = s.explore_spend / s.spend;
                    assert!(
                        share > traffic * 0.8 || spend_share > spend * 0.8,
                        "{policy:?} {traffic} {spend}: {s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn tries_shrink_the_uncertainty() {
        // Optimism tries a cold model, then, once tried often, returns to the objective's best.
        let e = Explorer::new(&settings(ExplorePolicy::Ucb, 1.0, 1.0));
        let names = ["known", "cold"];
        let c = cands(&names, &[0.8, 0.7], &[1.0, 1.0], &[10_000, 0]);
        let first = e.select(&c, 1.0, Objective::CostWeight(0.0));
        assert_eq!((first.order[0], first.explore), (1, true));
        let mut last = first;
        for _ in 0..200 {
            last = e.select(&c, 1.0, Objective::CostWeight(0.0));
        }
        assert_eq!((last.order[0], last.explore), (0, false));
        e.checkpoint_changed();
        assert!(e.select(&c, 1.0, Objective::CostWeight(0.0)).explore);
    }
}
