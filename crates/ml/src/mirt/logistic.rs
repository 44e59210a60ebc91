//! A per-model logistic regression, the baseline `eval` sets beside MIRT: P(success | x, m) = σ(w_m·x + c_m), one
//! independent weight vector per model over the same prompt representation, where MIRT shares W_a and W_b across
//! models and gives each only θ_m. Trained as MIRT is (Adam, binary cross-entropy on soft labels, mini-batches of
//! prompts, L2 decay, early stopping on the same validation slice for the same seed), so the two differ only in the
//! model.

use super::model::{
    dot, masked_mean_bce, sigmoid, split_for_early_stopping, Adam, Rng, TrainConfig,
};

/// One weight vector and intercept per model.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub w: Vec<Vec<f32>>,
    pub c: Vec<f32>,
}

impl Logistic {
    /// P(success) of every model for one prompt's x.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        self.w
            .iter()
            .zip(&self.c)
            .map(|(w, c)| sigmoid(dot(w, x) + c))
            .collect()
    }

    fn mean_bce(&self, xs: &[Vec<f32>], ys: &[Vec<Option<f32>>], idx: &[usize]) -> f64 {
        masked_mean_bce(ys, idx, |i, p| *p = self.predict(&xs[i]))
    }
}

/// Fit one logistic regression per model. `xs[i]` is prompt i's x, `ys[i][m]` its outcome with model m (None =
/// unknown, left out of model m's loss). Weights start at zero (P = 0.5): the problem is convex per model.
pub fn train(
    xs: &[Vec<f32>],
    ys: &[Vec<Option<f32>>],
    models: usize,
    cfg: &TrainConfig,
) -> Logistic {
    let dx = xs.first().map(Vec::len).unwrap_or(0);
    let mut rng = Rng::new(cfg.seed);
    let (val, mut tr) = split_for_early_stopping(ys, cfg, &mut rng);
    let eval_idx = if val.is_empty() { tr.clone() } else { val };
    let mut lr = Logistic {
        w: vec![vec![0.0; dx]; models],
        c: vec![0.0; models],
    };
    let mut opt_w: Vec<Adam> = (0..models).map(|_| Adam::new(dx)).collect();
    let mut opt_c = Adam::new(models);
    let mut g_w = vec![vec![0f32; dx]; models];
    let mut g_c = vec![0f32; models];
    let mut best = (f64::INFINITY, 0usize, lr.clone());
    let mut step = 0i32;
    for epoch in 1..=cfg.max_epochs {
        rng.shuffle(&mut tr);
        for batch in tr.chunks(cfg.batch_prompts.max(1)) {
            g_w.iter_mut().for_each(|g| g.fill(0.0));
            g_c.fill(0.0);
            let mut count = 0usize;
            for &i in batch {
                let x = &xs[i];
                for (m, y) in ys[i].iter().enumerate().take(models) {
                    let Some(y) = *y else { continue };
                    count += 1;
                    let g = sigmoid(dot(&lr.w[m], x) + lr.c[m]) - y; // dBCE/dz
                    g_w[m].iter_mut().zip(x).for_each(|(gw, xv)| *gw += g * xv);
                    g_c[m] += g;
                }
            }
            if count == 0 {
                continue;
            }
            // as MIRT: the batch's mean over its outcomes
            let scale = 1.0 / count as f32;
            step += 1;
            for m in 0..models {
                g_w[m].iter_mut().for_each(|g| *g *= scale);
                opt_w[m].step(&mut lr.w[m], &g_w[m], cfg.lr, step, cfg.weight_decay);
            }
            g_c.iter_mut().for_each(|g| *g *= scale);
            opt_c.step(&mut lr.c, &g_c, cfg.lr, step, 0.0);
        }
        let vb = lr.mean_bce(xs, ys, &eval_idx);
        if vb < best.0 - 1e-6 {
            best = (vb, epoch, lr.clone());
        } else if epoch - best.1 >= cfg.patience {
            break;
        }
    }
    best.2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three models on a 2-d x = (signal, 1): model 0 succeeds when the signal is positive, model 1 when it is
    /// negative, model 2 half the time whatever it is. The fit must find each model's direction, and leave model 2
    /// near 0.5 everywhere.
    #[test]
    fn each_model_gets_its_own_direction() {
        let mut rng = Rng::new(3);
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let s = (rng.uniform() * 2.0 - 1.0) as f32;
            xs.push(vec![s, 1.0]);
            let coin = if i % 2 == 0 { 1.0 } else { 0.0 };
            // model 1's outcome is missing on every third prompt: left out of its loss, not a failure
            let m1 = (i % 3 != 0).then_some(if s < 0.0 { 1.0 } else { 0.0 });
            ys.push(vec![Some(if s > 0.0 { 1.0 } else { 0.0 }), m1, Some(coin)]);
        }
        let fit = train(&xs, &ys, 3, &TrainConfig::default());
        let hi = fit.predict(&[0.8, 1.0]);
        let lo = fit.predict(&[-0.8, 1.0]);
        assert!(hi[0] > 0.8 && lo[0] < 0.2, "model 0: {hi:?} {lo:?}");
        assert!(hi[1] < 0.2 && lo[1] > 0.8, "model 1: {hi:?} {lo:?}");
        assert!(
            (hi[2] - 0.5).abs() < 0.1 && (lo[2] - 0.5).abs() < 0.1,
            "model 2: {hi:?} {lo:?}"
        );
        // reproducible from the seed
        assert_eq!(fit, train(&xs, &ys, 3, &TrainConfig::default()));
    }
}
