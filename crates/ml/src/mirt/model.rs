//! The MIRT model (`docs/routing.md#scoring-mirt`): P(success | x, m) = σ(a·θ_m − b), a = softplus(W_a·x), b = W_b·x.
//! Training: Adam on binary cross-entropy with soft labels in [0, 1], mini-batches of prompts, L2 decay, early
//! stopping on a held-out validation slice, all from one seed.

use serde::{Deserialize, Serialize};

/// Small seeded PRNG (SplitMix64): reproducible across platforms, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[inline]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[inline]
fn softplus(z: f32) -> f32 {
    if z > 20.0 {
        z
    } else {
        z.exp().ln_1p()
    }
}

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The learned weights: W_a (k × dx, row-major), W_b (dx), θ (models × k).
/// In a checkpoint the float vectors are stored exactly and compactly: base64 of little-endian f32.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Weights {
    pub dim_x: usize,
    pub latent: usize,
    #[serde(with = "f32_b64")]
    pub w_a: Vec<f32>,
    #[serde(with = "f32_b64")]
    pub w_b: Vec<f32>,
    #[serde(with = "f32_b64_nested")]
    pub theta: Vec<Vec<f32>>,
}

mod f32_b64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dualrouter_core::floats::to_b64(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let s = String::deserialize(d)?;
        dualrouter_core::floats::from_b64(&s).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod f32_b64_nested {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| dualrouter_core::floats::to_b64(x)))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| dualrouter_core::floats::from_b64(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl Weights {
    pub fn new(dim_x: usize, latent: usize, models: usize, rng: &mut Rng) -> Self {
        let sa = 1.0 / (dim_x as f64).sqrt();
        Self {
            dim_x,
            latent,
            w_a: (0..latent * dim_x)
                .map(|_| (rng.normal() * sa) as f32)
                .collect(),
            w_b: vec![0.0; dim_x],
            theta: (0..models)
                .map(|_| (0..latent).map(|_| (rng.normal() * 0.1) as f32).collect())
                .collect(),
        }
    }

    /// The prompt's side: a (written into `a`) and b.
    pub fn prompt_params(&self, x: &[f32], a: &mut [f32]) -> f32 {
        for (k, ak) in a.iter_mut().enumerate().take(self.latent) {
            *ak = softplus(dot(&self.w_a[k * self.dim_x..(k + 1) * self.dim_x], x));
        }
        dot(&self.w_b, x)
    }

    /// P(success) of every model for one prompt's features.
    pub fn predict_into(&self, x: &[f32], out: &mut Vec<f32>) {
        let mut a = [0f32; 256];
        let k = self.latent.min(256);
        let b = self.prompt_params(x, &mut a[..k]);
        out.clear();
        out.extend(self.theta.iter().map(|t| sigmoid(dot(&a[..k], t) - b)));
    }

    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.theta.len());
        self.predict_into(x, &mut v);
        v
    }
}

/// Training settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub latent: usize,
    pub seed: u64,
    pub lr: f32,
    pub weight_decay: f32,
    pub batch_prompts: usize,
    pub max_epochs: usize,
    pub patience: usize,
    /// Fraction of training prompts held out for early stopping.
    pub val_fraction: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            latent: 25,
            seed: 42,
            lr: 2e-3,
            weight_decay: 1e-4,
            batch_prompts: 32,
            max_epochs: 200,
            patience: 15,
            val_fraction: 0.1,
        }
    }
}

/// What training did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_prompts: usize,
    pub val_prompts: usize,
    pub outcomes: usize,
    pub val_bce: f64,
}

/// Adam state for one flat parameter vector.
pub(crate) struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
    pub(crate) fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, t: i32, wd: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for i in 0..p.len() {
            let gi = g[i] + wd * p[i];
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * gi;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            p[i] -= lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + eps);
        }
    }
}

fn bce(p: f32, y: f32) -> f64 {
    let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
    let y = f64::from(y);
    -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
}

/// Mean BCE of `w` over the prompts `idx`.
pub fn mean_bce(w: &Weights, xs: &[Vec<f32>], ys: &[Vec<Option<f32>>], idx: &[usize]) -> f64 {
    masked_mean_bce(ys, idx, |i, p| w.predict_into(&xs[i], p))
}

/// Mean BCE over the known outcomes of the prompts `idx`, `predict(i, p)` writing prompt i's P per model into `p`.
pub(crate) fn masked_mean_bce(
    ys: &[Vec<Option<f32>>],
    idx: &[usize],
    mut predict: impl FnMut(usize, &mut Vec<f32>),
) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    let mut p = Vec::new();
    for &i in idx {
        predict(i, &mut p);
        for (pm, y) in p.iter().zip(&ys[i]) {
            if let Some(y) = y {
                s += bce(*pm, *y);
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// The prompts that take part in training (those with at least one outcome), shuffled by `rng` and split into the
/// validation slice for early stopping (`cfg.val_fraction`, none under 10 prompts) and the rest, in that order.
pub(crate) fn split_for_early_stopping(
    ys: &[Vec<Option<f32>>],
    cfg: &TrainConfig,
    rng: &mut Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..ys.len())
        .filter(|&i| ys[i].iter().any(Option::is_some))
        .collect();
    rng.shuffle(&mut idx);
    let n_val = if idx.len() >= 10 {
        ((idx.len() as f64 * cfg.val_fraction).round() as usize).max(1)
    } else {
        0
    };
    let tr = idx.split_off(n_val);
    (idx, tr)
}

/// Fit MIRT. `xs[i]` is prompt i's feature vector, `ys[i][m]` its outcome with model m (None = unknown).
/// `progress` is called after each epoch with (epoch, val_bce).
pub fn train(
    xs: &[Vec<f32>],
    ys: &[Vec<Option<f32>>],
    models: usize,
    cfg: &TrainConfig,
    mut progress: impl FnMut(usize, f64),
) -> (Weights, TrainReport) {
    let dx = xs.first().map(Vec::len).unwrap_or(0);
    let k = cfg.latent.clamp(1, 256);
    let mut rng = Rng::new(cfg.seed);
    let mut w = Weights::new(dx, k, models, &mut rng);

    let (val, mut tr) = split_for_early_stopping(ys, cfg, &mut rng);
    let outcomes = tr.iter().map(|&i| ys[i].iter().flatten().count()).sum();

    let mut opt_a = Adam::new(w.w_a.len());
    let mut opt_b = Adam::new(w.w_b.len());
    let mut opt_t: Vec<Adam> = (0..models).map(|_| Adam::new(k)).collect();
    let mut g_a = vec![0f32; w.w_a.len()];
    let mut g_b = vec![0f32; dx];
    let mut g_t = vec![vec![0f32; k]; models];
    let mut a = vec![0f32; k];
    let mut pre = vec![0f32; k];
    let mut da = vec![0f32; k];

    let eval_idx: Vec<usize> = if val.is_empty() {
        tr.clone()
    } else {
        val.clone()
    };
    let mut best = (f64::INFINITY, 0usize, w.clone());
    let mut step = 0i32;
    let mut epochs_run = 0;
    for epoch in 1..=cfg.max_epochs {
        epochs_run = epoch;
        rng.shuffle(&mut tr);
        for batch in tr.chunks(cfg.batch_prompts.max(1)) {
            g_a.iter_mut().for_each(|g| *g = 0.0);
            g_b.iter_mut().for_each(|g| *g = 0.0);
            g_t.iter_mut()
                .for_each(|t| t.iter_mut().for_each(|g| *g = 0.0));
            let mut count = 0usize;
            for &i in batch {
                let x = &xs[i];
                for kk in 0..k {
                    pre[kk] = dot(&w.w_a[kk * dx..(kk + 1) * dx], x);
                    a[kk] = softplus(pre[kk]);
                }
                let b = dot(&w.w_b, x);
                da.iter_mut().for_each(|v| *v = 0.0);
                let mut db = 0f32;
                for (m, y) in ys[i].iter().enumerate() {
                    let Some(y) = *y else { continue };
                    count += 1;
                    let p = sigmoid(dot(&a, &w.theta[m]) - b);
                    let g = p - y; // dBCE/dz
                    for kk in 0..k {
                        g_t[m][kk] += g * a[kk];
                        da[kk] += g * w.theta[m][kk];
                    }
                    db -= g;
                }
                for kk in 0..k {
                    let gpre = da[kk] * sigmoid(pre[kk]);
                    if gpre != 0.0 {
                        let row = &mut g_a[kk * dx..(kk + 1) * dx];
                        row.iter_mut().zip(x).for_each(|(g, xv)| *g += gpre * xv);
                    }
                }
                g_b.iter_mut().zip(x).for_each(|(g, xv)| *g += db * xv);
            }
            if count == 0 {
                continue;
            }
            let scale = 1.0 / count as f32;
            g_a.iter_mut().for_each(|g| *g *= scale);
            g_b.iter_mut().for_each(|g| *g *= scale);
            step += 1;
            opt_a.step(&mut w.w_a, &g_a, cfg.lr, step, cfg.weight_decay);
            opt_b.step(&mut w.w_b, &g_b, cfg.lr, step, cfg.weight_decay);
            for m in 0..models {
                g_t[m].iter_mut().for_each(|g| *g *= scale);
                opt_t[m].step(&mut w.theta[m], &g_t[m], cfg.lr, step, cfg.weight_decay);
            }
        }
        let vb = mean_bce(&w, xs, ys, &eval_idx);
        progress(epoch, vb);
        if vb < best.0 - 1e-6 {
            best = (vb, epoch, w.clone());
        } else if epoch - best.1 >= cfg.patience {
            break;
        }
    }
    let (val_bce, best_epoch, w) = best;
    let report = TrainReport {
        epochs_run,
        best_epoch,
        train_prompts: tr.len(),
        val_prompts: val.len(),
        outcomes,
        val_bce,
    };
    (w, report)
}
