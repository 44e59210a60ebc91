//! Routing-quality metrics (defined in `docs/routing.md#evaluation`), baselines and the cost-quality plot.
//!
//! - hull: the non-decreasing upper convex hull of a router's (cost, quality) points: the upper concave chain up to
//!   the highest point, then flat to the right (spending more never has to lower quality).
//! - AIQ: the area under the hull over [cheapest single-model cost, dearest single-model cost] divided by the range,
//!   on linear cost and on log10 cost (hull taken in log space). `None` when the hull does not reach back to the
//!   cheapest single model's cost (a curve that starts dearer has no defined quality there). Equal costs (zero
//!   range): the hull's quality at that cost.
//! - savings at parity: 1 − (least hull cost reaching best single's quality) / (best single's cost).
//! - two models: PGR = (q − q_weak)/(q_strong − q_weak) against the share of calls to the strong model; APGR is
//!   the area under its hull over [0, 1] (all-weak (0, 0) and all-strong (1, 1) included); CPT(x) the least share
//!   of strong calls whose hull reaches PGR x (a fraction in [0, 1]).

pub mod svg;

use serde::Serialize;

use crate::mirt::{rank, Objective};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub cost: f64,
    pub quality: f64,
}

/// Non-decreasing upper convex hull, as its vertices sorted by cost.
pub fn hull(points: &[Point]) -> Vec<Point> {
    let mut p: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.cost.is_finite() && p.quality.is_finite())
        .collect();
    p.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(b.quality.total_cmp(&a.quality))
    });
    p.dedup_by(|b, a| a.cost == b.cost); // keeps the best quality per cost
    let mut h: Vec<Point> = Vec::new();
    for q in p {
        while h.len() >= 2 {
            let (o, a) = (h[h.len() - 2], h[h.len() - 1]);
            let cross = (a.cost - o.cost) * (q.quality - o.quality)
                - (a.quality - o.quality) * (q.cost - o.cost);
            if cross >= 0.0 {
                h.pop();
            } else {
                break;
            }
        }
        h.push(q);
    }
    // keep up to the (first) highest vertex; after it the hull is flat
    if let Some(best) = h
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.quality.total_cmp(&b.1.quality).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
    {
        h.truncate(best + 1);
    }
    h
}

/// The hull's quality at cost `c`: None left of its first vertex, flat right of its last.
pub fn hull_at(h: &[Point], c: f64) -> Option<f64> {
    let first = h.first()?;
    if c < first.cost {
        return None;
    }
    for w in h.windows(2) {
        if c <= w[1].cost {
            let t = if w[1].cost > w[0].cost {
                (c - w[0].cost) / (w[1].cost - w[0].cost)
            } else {
                1.0
            };
            return Some(w[0].quality + t * (w[1].quality - w[0].quality));
        }
    }
    h.last().map(|p| p.quality)
}

/// Mean of the hull over [lo, hi]; None if the hull starts right of lo.
pub fn aiq(h: &[Point], lo: f64, hi: f64) -> Option<f64> {
    let first = h.first()?;
    let tol = 1e-9 * (hi - lo).abs().max(lo.abs()).max(1e-300);
    if first.cost > lo + tol {
        return None;
    }
    if hi - lo <= tol {
        return hull_at(h, lo.max(first.cost));
    }
    // breakpoints: lo, vertices inside (lo, hi), hi; hull is linear between them
    let mut xs = vec![lo];
    xs.extend(h.iter().map(|p| p.cost).filter(|&c| c > lo && c < hi));
    xs.push(hi);
    let mut area = 0.0;
    for w in xs.windows(2) {
        let a = hull_at(h, w[0].max(first.cost))?;
        let b = hull_at(h, w[1].max(first.cost))?;
        area += 0.5 * (a + b) * (w[1] - w[0]);
    }
    Some(area / (hi - lo))
}

/// Least cost on the hull reaching `target` quality.
pub fn cost_to_reach(h: &[Point], target: f64) -> Option<f64> {
    let eps = 1e-12;
    let first = h.first()?;
    if first.quality >= target - eps {
        return Some(first.cost);
    }
    for w in h.windows(2) {
        if w[1].quality >= target - eps {
            let dq = w[1].quality - w[0].quality;
            let t = if dq > 0.0 {
                (target - w[0].quality) / dq
            } else {
                1.0
            };
            return Some(w[0].cost + t.clamp(0.0, 1.0) * (w[1].cost - w[0].cost));
        }
    }
    None
}

/// The metrics of one router (the `M` of `eval --json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub aiq_linear: Option<f64>,
    pub aiq_log: Option<f64>,
    pub savings_at_parity: Option<f64>,
    pub max_quality: f64,
    pub max_quality_cost: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apgr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpt50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpt80: Option<f64>,
}

/// Context for metrics: the single models' points on the same split.
#[derive(Debug, Clone)]
pub struct Singles {
    pub names: Vec<String>,
    pub points: Vec<Point>,
}

impl Singles {
    pub fn cheapest(&self) -> f64 {
        self.points
            .iter()
            .map(|p| p.cost)
            .fold(f64::INFINITY, f64::min)
    }
    pub fn dearest(&self) -> f64 {
        self.points
            .iter()
            .map(|p| p.cost)
            .fold(f64::NEG_INFINITY, f64::max)
    }
    /// Index of the best single model (highest quality; cheaper wins a tie).
    pub fn best(&self) -> usize {
        (0..self.points.len())
            .max_by(|&a, &b| {
                self.points[a]
                    .quality
                    .total_cmp(&self.points[b].quality)
                    .then(self.points[b].cost.total_cmp(&self.points[a].cost))
            })
            .unwrap_or(0)
    }
}

/// One router's curve: a point per knob value, and (two models) the share of calls to each model.
#[derive(Debug, Clone)]
pub struct Curve {
    pub points: Vec<Point>,
    pub shares: Vec<Vec<f64>>,
}

pub fn metrics(curve: &Curve, singles: &Singles) -> Metrics {
    let h = hull(&curve.points);
    let (lo, hi) = (singles.cheapest(), singles.dearest());
    let aiq_linear = aiq(&h, lo, hi);
    let logged: Vec<Point> = curve
        .points
        .iter()
        .map(|p| Point {
            cost: p.cost.max(1e-300).log10(),
            quality: p.quality,
        })
        .collect();
    let aiq_log = aiq(
        &hull(&logged),
        lo.max(1e-300).log10(),
        hi.max(1e-300).log10(),
    );
    let best = singles.points[singles.best()];
    let savings_at_parity = cost_to_reach(&h, best.quality).map(|c| {
        if best.cost > 0.0 {
            1.0 - c / best.cost
        } else {
            0.0
        }
    });
    let top = h.last().copied().unwrap_or(Point {
        cost: f64::NAN,
        quality: f64::NAN,
    });
    let (mut apgr, mut cpt50, mut cpt80) = (None, None, None);
    if singles.points.len() == 2 && curve.shares.len() == curve.points.len() {
        let s = singles.best();
        let w = 1 - s;
        let (qs, qw) = (singles.points[s].quality, singles.points[w].quality);
        if qs > qw {
            let mut pts = vec![
                Point {
                    cost: 0.0,
                    quality: 0.0,
                },
                Point {
                    cost: 1.0,
                    quality: 1.0,
                },
            ];
            for (p, sh) in curve.points.iter().zip(&curve.shares) {
                pts.push(Point {
                    cost: sh.get(s).copied().unwrap_or(0.0),
                    quality: (p.quality - qw) / (qs - qw),
                });
            }
            let hp = hull(&pts);
            apgr = aiq(&hp, 0.0, 1.0);
            cpt50 = cost_to_reach(&hp, 0.5);
            cpt80 = cost_to_reach(&hp, 0.8);
        }
    }
    Metrics {
        aiq_linear,
        aiq_log,
        savings_at_parity,
        max_quality: top.quality,
        max_quality_cost: top.cost,
        apgr,
        cpt50,
        cpt80,
    }
}

/// Test outcomes: per query, each model's score and cost.
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub scores: Vec<Vec<f32>>,
    pub costs: Vec<Vec<f64>>,
}

impl Outcomes {
    pub fn models(&self) -> usize {
        self.scores.first().map(Vec::len).unwrap_or(0)
    }

    pub fn singles(&self, names: &[String]) -> Singles {
        let n = self.scores.len().max(1) as f64;
        let points = (0..self.models())
            .map(|m| Point {
                cost: self.costs.iter().map(|c| c[m]).sum::<f64>() / n,
                quality: self.scores.iter().map(|s| f64::from(s[m])).sum::<f64>() / n,
            })
            .collect();
        Singles {
            names: names.to_vec(),
            points,
        }
    }

    /// The router's curve under `sweep`.
    pub fn sweep(&self, p: &[Vec<f32>], price: &[f64], cost_ref: f64, sweep: Sweep) -> Curve {
        match sweep {
            Sweep::Exact => self.exact_curve(p, price, cost_ref),
            Sweep::Grid(n) => self.curve(p, price, cost_ref, &cost_weight_knobs(n)),
        }
    }

    /// Every distinct routing of the cost-weight objective (score = P − w·price/cost_ref, ties to
    /// the cheaper model, as [`rank`]) over w ≥ 0: the point at w = 0, then one point after
    /// each w at which some query's choice changes. Per query the choice only moves to cheaper
    /// models as w grows; the next change is where a cheaper model's line first meets the
    /// current one's. A grid of w values finds a subset of these points, so its hull lies on or
    /// under this one (with 64 values, AIQ up to a few thousandths lower).
    pub fn exact_curve(&self, p: &[Vec<f32>], price: &[f64], cost_ref: f64) -> Curve {
        let m = self.models();
        let n = self.scores.len().max(1) as f64;
        let cref = if cost_ref > 0.0 { cost_ref } else { 1.0 };
        let slope: Vec<f64> = price.iter().map(|c| c / cref).collect();
        let (mut cost, mut quality) = (0.0, 0.0);
        let mut share = vec![0.0; m];
        // (w, query, model it moves to), over all queries.
        let mut events: Vec<(f64, usize, usize)> = Vec::new();
        let mut choice: Vec<Option<usize>> = vec![None; p.len()];
        for (i, pi) in p.iter().enumerate() {
            let Some(&first) = rank(pi, price, cost_ref, Objective::CostWeight(0.0)).first() else {
                continue;
            };
            choice[i] = Some(first);
            cost += self.costs[i][first];
            quality += f64::from(self.scores[i][first]);
            share[first] += 1.0 / n;
            let mut cur = first;
            loop {
                // The cheaper model whose line meets the current one's first (ties: cheaper,
                // then the lower index, as `rank` breaks them).
                let mut next: Option<(f64, usize)> = None;
                for k in 0..pi.len().min(slope.len()) {
                    if slope[k] >= slope[cur] {
                        continue;
                    }
                    let w = (f64::from(pi[cur]) - f64::from(pi[k])) / (slope[cur] - slope[k]);
                    let better = match next {
                        None => true,
                        Some((bw, bk)) => w < bw || (w == bw && (price[k], k) < (price[bk], bk)),
                    };
                    if better {
                        next = Some((w, k));
                    }
                }
                let Some((w, k)) = next else { break };
                events.push((w.max(0.0), i, k));
                cur = k;
            }
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut points = vec![Point {
            cost: cost / n,
            quality: quality / n,
        }];
        let mut shares = vec![share.clone()];
        let mut e = 0;
        while e < events.len() {
            let w = events[e].0;
            while e < events.len() && events[e].0 == w {
                let (_, i, k) = events[e];
                if let Some(old) = choice[i] {
                    cost += self.costs[i][k] - self.costs[i][old];
                    quality += f64::from(self.scores[i][k]) - f64::from(self.scores[i][old]);
                    share[old] -= 1.0 / n;
                    share[k] += 1.0 / n;
                }
                choice[i] = Some(k);
                e += 1;
            }
            points.push(Point {
                cost: cost / n,
                quality: quality / n,
            });
            shares.push(share.clone());
        }
        Curve { points, shares }
    }

    /// Route every query with predicted P (`p[i][m]`) under each knob; one point per knob.
    pub fn curve(
        &self,
        p: &[Vec<f32>],
        price: &[f64],
        cost_ref: f64,
        knobs: &[Objective],
    ) -> Curve {
        let n = self.scores.len().max(1) as f64;
        let mut points = Vec::with_capacity(knobs.len());
        let mut shares = Vec::with_capacity(knobs.len());
        for &k in knobs {
            let (mut c, mut q) = (0.0, 0.0);
            let mut share = vec![0.0; self.models()];
            for (i, pi) in p.iter().enumerate() {
                let Some(&m) = rank(pi, price, cost_ref, k).first() else {
                    continue;
                };
                c += self.costs[i][m];
                q += f64::from(self.scores[i][m]);
                share[m] += 1.0 / n;
            }
            points.push(Point {
                cost: c / n,
                quality: q / n,
            });
            shares.push(share);
        }
        Curve { points, shares }
    }
}

/// A grid of the cost-weight knob: 0 and `n − 1` values from 1e-4 to 1e3 (geometric); `n` points.
pub fn cost_weight_knobs(n: usize) -> Vec<Objective> {
    let mut v = vec![Objective::CostWeight(0.0)];
    let k = n.saturating_sub(1);
    for i in 0..k {
        let e = -4.0 + 7.0 * i as f64 / (k.max(2) - 1) as f64;
        v.push(Objective::CostWeight(10f64.powf(e)));
    }
    v
}

/// How the cost-weight knob is swept for a router's curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every routing the knob can give, w from 0 to ∞ (see [`Outcomes::exact_curve`]).
    Exact,
    /// The grid of [`cost_weight_knobs`] with this many points.
    Grid(usize),
}

impl std::str::FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "exact" {
            return Ok(Sweep::Exact);
        }
        match s.parse::<usize>() {
            Ok(n) if n >= 2 => Ok(Sweep::Grid(n)),
            _ => Err(format!(
                "`{s}`: expected `exact` or a number of knob values (at least 2)"
            )),
        }
    }
}

impl std::fmt::Display for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sweep::Exact => f.write_str("exact"),
            Sweep::Grid(n) => write!(f, "{n}"),
        }
    }
}

/// kNN estimate of P: the mean outcome of each model over the k nearest training prompts (cosine on unit vectors),
/// with one pseudo-count of the model's overall mean.
pub fn knn_predict(
    train_emb: &[Vec<f32>],
    train_y: &[Vec<Option<f32>>],
    query: &[f32],
    k: usize,
    prior: &[f32],
) -> Vec<f32> {
    let mut sims: Vec<(f32, usize)> = train_emb
        .iter()
        .enumerate()
        .map(|(i, e)| (e.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    let k = k.min(sims.len());
    if k == 0 {
        return prior.to_vec();
    }
    sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let m = prior.len();
    let mut sum = prior.to_vec();
    let mut cnt = vec![1f32; m];
    for &(_, i) in &sims[..k] {
        for j in 0..m {
            if let Some(y) = train_y[i][j] {
                sum[j] += y;
                cnt[j] += 1.0;
            }
        }
    }
    sum.iter().zip(&cnt).map(|(s, c)| s / c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(cost: f64, quality: f64) -> Point {
        Point { cost, quality }
    }

    #[test]
    fn hull_drops_dominated_and_flattens() {
        // (2, 0.5) lies under the chord from (1, 0.4) to (3, 0.8); (4, 0.7) is past the top.
        let h = hull(&[pt(1.0, 0.4), pt(2.0, 0.5), pt(3.0, 0.8), pt(4.0, 0.7)]);
        assert_eq!(h, vec![pt(1.0, 0.4), pt(3.0, 0.8)]);
        assert!((hull_at(&h, 2.0).unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(hull_at(&h, 10.0), Some(0.8));
        assert_eq!(hull_at(&h, 0.5), None);
    }

    #[test]
    fn aiq_savings_by_hand() {
        // Singles: A (1, 0.4), B (5, 0.8) (best). Router points: (1, 0.4), (2, 0.8).
        // Hull: (1,0.4)-(2,0.8), flat 0.8 to 5. Area over [1,5] = 0.5*(0.4+0.8)*1 + 0.8*3 = 3.0 → AIQ 0.75.
        let singles = Singles {
            names: vec!["A".into(), "B".into()],
            points: vec![pt(1.0, 0.4), pt(5.0, 0.8)],
        };
        let curve = Curve {
            points: vec![pt(1.0, 0.4), pt(2.0, 0.8)],
            shares: vec![vec![1.0, 0.0], vec![0.5, 0.5]],
        };
        let m = metrics(&curve, &singles);
        assert!((m.aiq_linear.unwrap() - 0.75).abs() < 1e-12);
        // parity with B (0.8) first reached at cost 2 → savings 1 − 2/5 = 0.6
        assert!((m.savings_at_parity.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!((m.max_quality, m.max_quality_cost), (0.8, 2.0));
        // PGR points: (0,0), (1,1), (0,0), (0.5, 1): hull (0,0)-(0.5,1) flat → APGR = 0.25 + 0.5 = 0.75
        assert!((m.apgr.unwrap() - 0.75).abs() < 1e-12);
        assert!((m.cpt50.unwrap() - 0.25).abs() < 1e-12);
        assert!((m.cpt80.unwrap() - 0.4).abs() < 1e-12);
        // log AIQ: x = log10 cost, hull (0,0.4)-(log10 2, 0.8) flat to log10 5
        let l2 = 2f64.log10();
        let l5 = 5f64.log10();
        let want = (0.5 * (0.4 + 0.8) * l2 + 0.8 * (l5 - l2)) / l5;
        assert!((m.aiq_log.unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn aiq_undefined_when_curve_starts_dear_and_parity_null() {
        let h = hull(&[pt(3.0, 0.9)]);
        assert_eq!(aiq(&h, 1.0, 5.0), None);
        assert_eq!(
            cost_to_reach(&hull(&[pt(1.0, 0.3), pt(2.0, 0.5)]), 0.8),
            None
        );
    }

    #[test]
    fn oracle_curve_picks_cheapest_correct() {
        let o = Outcomes {
            scores: vec![vec![1.0, 1.0], vec![0.0, 1.0], vec![0.0, 0.0]],
            costs: vec![vec![1.0, 10.0], vec![1.0, 10.0], vec![1.0, 10.0]],
        };
        let p: Vec<Vec<f32>> = o.scores.clone();
        let c = o.curve(&p, &[1.0, 10.0], 10.0, &[Objective::CostWeight(1e-6)]);
        assert!((c.points[0].quality - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.points[0].cost - 4.0).abs() < 1e-12);
    }

    #[test]
    fn exact_curve_by_hand() {
        // Prices 1 and 2 (cost_ref 2: slopes 0.5 and 1). Query 0 leaves the dear model at
        // w = (0.9 − 0.5) / 0.5 = 0.8, query 1 at (0.8 − 0.7) / 0.5 = 0.2.
        let o = Outcomes {
            scores: vec![vec![0.0, 1.0], vec![1.0, 1.0]],
            costs: vec![vec![1.0, 2.0], vec![1.0, 2.0]],
        };
        let p = vec![vec![0.5, 0.9], vec![0.7, 0.8]];
        let c = o.exact_curve(&p, &[1.0, 2.0], 2.0);
        assert_eq!(
            c.points,
            vec![pt(2.0, 1.0), pt(1.5, 1.0), pt(1.0, 0.5)],
            "{c:?}"
        );
        assert_eq!(
            c.shares,
            vec![vec![0.0, 1.0], vec![0.5, 0.5], vec![1.0, 0.0]]
        );
        // Equal prices: the knob changes nothing, one point.
        let c = o.exact_curve(&p, &[1.0, 1.0], 1.0);
        assert_eq!(c.points, vec![pt(2.0, 1.0)]);
    }

    #[test]
    fn every_grid_point_is_on_the_exact_curve() {
        // Seeded pseudo-random P, outcomes and prices; a grid of w values between the
        // breakpoints gives routings the exact curve lists, and its hull's AIQ is no higher.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (queries, models) = (300, 6);
        let price: Vec<f64> = (0..models).map(|_| 0.1 + 10.0 * next()).collect();
        let p: Vec<Vec<f32>> = (0..queries)
            .map(|_| (0..models).map(|_| next() as f32).collect())
            .collect();
        let o = Outcomes {
            scores: p
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|&x| f32::from(next() < f64::from(x)))
                        .collect()
                })
                .collect(),
            costs: (0..queries).map(|_| price.clone()).collect(),
        };
        let cref = price.iter().copied().fold(0.0, f64::max);
        let exact = o.exact_curve(&p, &price, cref);
        let grid = o.curve(&p, &price, cref, &cost_weight_knobs(400));
        assert!(exact.points.len() > 100, "{}", exact.points.len());
        for g in &grid.points {
            assert!(
                exact
                    .points
                    .iter()
                    .any(|e| (e.cost - g.cost).abs() < 1e-9 && (e.quality - g.quality).abs() < 1e-9),
                "grid point {g:?} is not on the exact curve"
            );
        }
        let (lo, hi) = (price.iter().copied().fold(f64::INFINITY, f64::min), cref);
        let a_exact = aiq(&hull(&exact.points), lo, hi).unwrap();
        let a_grid = aiq(
            &hull(&o.curve(&p, &price, cref, &cost_weight_knobs(64)).points),
            lo,
            hi,
        )
        .unwrap();
        assert!(a_exact >= a_grid - 1e-12, "{a_exact} < {a_grid}");
    }
}
