//! Prompt clusters: a spherical k-means of the training prompts' embeddings. With
//! `--prompt-x clusters:K`, a prompt enters MIRT as a one-hot of its nearest centroid instead of
//! its embedding, so the router learns each model's ability per kind of prompt and ignores the
//! prompt-level detail of the embedding (which, on data whose prompt-level outcomes are mostly
//! noise, it can only fit as noise).

use super::model::Rng;

/// Cosine similarity of unit vectors.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Index of the centroid nearest to `x` by cosine (the first on ties); 0 when there are none.
pub fn nearest(centroids: &[Vec<f32>], x: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let s = dot(c, x);
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// Spherical k-means of `points` into at most `k` clusters (fewer when there are fewer distinct
/// points): k-means++ seeding from `seed`, then Lloyd iterations on cosine until no point moves
/// or `max_iter`. Returns unit-length centroids; deterministic for a seed.
pub fn kmeans(points: &[Vec<f32>], k: usize, seed: u64, max_iter: usize) -> Vec<Vec<f32>> {
    let pts: Vec<Vec<f32>> = points.iter().map(|p| normalized(p)).collect();
    if pts.is_empty() || k == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    // k-means++: each next centroid drawn with probability ∝ its squared distance to the
    // nearest chosen one (for unit vectors, 2 − 2·cos).
    let mut centroids = vec![pts[(rng.next_u64() % pts.len() as u64) as usize].clone()];
    let mut d2: Vec<f64> = pts
        .iter()
        .map(|p| f64::from(2.0 - 2.0 * dot(p, &centroids[0])).max(0.0))
        .collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        if total <= 1e-12 {
            break;
        }
        let mut r = rng.uniform() * total;
        let mut pick = d2.len() - 1;
        for (i, d) in d2.iter().enumerate() {
            if r < *d {
                pick = i;
                break;
            }
            r -= d;
        }
        let c = pts[pick].clone();
        for (d, p) in d2.iter_mut().zip(&pts) {
            *d = d.min(f64::from(2.0 - 2.0 * dot(p, &c)).max(0.0));
        }
        centroids.push(c);
    }
    let dim = pts[0].len();
    let mut assign = vec![usize::MAX; pts.len()];
    for _ in 0..max_iter {
        let mut moved = false;
        for (a, p) in assign.iter_mut().zip(&pts) {
            let n = nearest(&centroids, p);
            if *a != n {
                *a = n;
                moved = true;
            }
        }
        if !moved {
            break;
        }
        let mut sums = vec![vec![0f32; dim]; centroids.len()];
        for (a, p) in assign.iter().zip(&pts) {
            sums[*a].iter_mut().zip(p).for_each(|(s, x)| *s += x);
        }
        for (c, s) in centroids.iter_mut().zip(sums) {
            // An emptied cluster keeps its centroid.
            if s.iter().any(|x| *x != 0.0) {
                *c = normalized(&s);
            }
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around three directions, shuffled together.
    fn blobs(seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let dirs = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.7, 0.7],
        ];
        let mut rng = Rng::new(seed);
        let mut pts = Vec::new();
        let mut truth = Vec::new();
        for i in 0..90 {
            let d = &dirs[i % 3];
            pts.push(
                d.iter()
                    .map(|x| *x as f32 + (rng.normal() * 0.05) as f32)
                    .collect(),
            );
            truth.push(i % 3);
        }
        (pts, truth)
    }

    #[test]
    fn kmeans_recovers_separated_clusters_and_is_seeded() {
        let (pts, truth) = blobs(1);
        let c = kmeans(&pts, 3, 7, 50);
        assert_eq!(c.len(), 3);
        for v in &c {
            assert!((dot(v, v) - 1.0).abs() < 1e-4, "unit centroids");
        }
        // Same cluster exactly when the same blob.
        let got: Vec<usize> = pts.iter().map(|p| nearest(&c, p)).collect();
        for i in 0..pts.len() {
            for j in 0..pts.len() {
                assert_eq!(got[i] == got[j], truth[i] == truth[j], "points {i}, {j}");
            }
        }
        assert_eq!(c, kmeans(&pts, 3, 7, 50), "same seed, same centroids");
    }

    #[test]
    fn kmeans_handles_degenerate_input() {
        assert!(kmeans(&[], 4, 1, 10).is_empty());
        // Fewer distinct points than k: no duplicate centroids, every point placed.
        let same = vec![vec![1.0, 0.0]; 5];
        let c = kmeans(&same, 4, 1, 10);
        assert_eq!(c.len(), 1);
        assert_eq!(nearest(&c, &[1.0, 0.0]), 0);
        assert_eq!(nearest(&[], &[1.0, 0.0]), 0);
    }
}
