//! `dualrouter eval-classifier`: accuracy and latency of the embedded classifier on labelled
//! utterances.
//!
//! Input: a CSV with `text` and either `domain`,`action` or HWU64's `scenario`,`intent`, plus
//! `split` (`train`/`test`) or `fold` (cross-validation: train on every fold but one, test on it,
//! averaged over the folds). When `split` does not say train/test (HWU64's says `testset` on
//! every row) and `fold` exists, folds are used.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::embedded::{HeadTraining, SoftmaxHead};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{file}: {message}")]
    Data { file: String, message: String },
    #[error("{file}, row {row}: {message}")]
    Row {
        file: String,
        row: usize,
        message: String,
    },
    #[error("encoder: {0}")]
    Encoder(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    Train,
    Test,
    Fold(String),
}

#[derive(Debug, Clone)]
pub struct Labelled {
    pub text: String,
    pub domain: String,
    pub action: String,
    pub group: Group,
}

impl Labelled {
    pub fn route(&self) -> String {
        format!("{}/{}", self.domain, self.action)
    }
}

/// Reads the CSV; every problem names the file and the row (1-based, header = row 1).
pub fn load_csv(path: &Path) -> Result<Vec<Labelled>, EvalError> {
    let file = path.display().to_string();
    let data_err = |message: String| EvalError::Data {
        file: file.clone(),
        message,
    };
    let mut rdr =
        csv::Reader::from_path(path).map_err(|e| data_err(format!("cannot read: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| data_err(format!("no header row: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let text = col("text").ok_or_else(|| data_err("missing column 'text'".into()))?;
    let (domain, action) = match (col("domain"), col("action"), col("scenario"), col("intent")) {
        (Some(d), Some(a), _, _) => (d, a),
        (_, _, Some(s), Some(i)) => (s, i),
        _ => {
            return Err(data_err(
                "missing columns 'domain','action' (or 'scenario','intent')".into(),
            ))
        }
    };
    let (split, fold) = (col("split"), col("fold"));
    if split.is_none() && fold.is_none() {
        return Err(data_err(
            "missing column 'split' (train/test) or 'fold'".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut folds: Vec<String> = Vec::new();
    let mut splits_usable = split.is_some();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| EvalError::Row {
            file: file.clone(),
            row,
            message: e.to_string(),
        })?;
        let get = |c: usize| rec.get(c).unwrap_or("").trim().to_string();
        let (t, d, a) = (get(text), get(domain), get(action));
        for (name, v) in [("text", &t), ("domain", &d), ("action", &a)] {
            if v.is_empty() {
                return Err(EvalError::Row {
                    file: file.clone(),
                    row,
                    message: format!("empty '{name}'"),
                });
            }
        }
        folds.push(fold.map(get).unwrap_or_default());
        let group = match split.map(get).as_deref() {
            Some("train") => Group::Train,
            Some("test") => Group::Test,
            _ => {
                splits_usable = false;
                match fold.map(get) {
                    Some(f) if !f.is_empty() => Group::Fold(f),
                    _ => {
                        return Err(EvalError::Row {
                            file: file.clone(),
                            row,
                            message: "neither split (train/test) nor fold".into(),
                        })
                    }
                }
            }
        };
        rows.push(Labelled {
            text: t,
            domain: d,
            action: a,
            group,
        });
    }
    if rows.is_empty() {
        return Err(data_err("no data rows".into()));
    }
    // A file whose split column is partly unusable falls back to folds for every row.
    if !splits_usable && fold.is_some() {
        for (r, f) in rows.iter_mut().zip(folds) {
            r.group = Group::Fold(f);
        }
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassifierReport {
    pub domain_accuracy: f64,
    pub route_accuracy: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Test examples scored (summed over folds).
    pub examples: usize,
    /// Folds evaluated (1 for a train/test split).
    pub folds: usize,
}

/// Evaluates the embedded classifier's head. `embed` embeds many texts (cached is fine);
/// `embed_fresh` embeds one text without any cache, for the latency figures, which time the
/// encoder pass plus the head on up to `latency_samples` test prompts of the first fold.
pub fn evaluate<E: std::fmt::Display>(
    rows: &[Labelled],
    embed: impl Fn(&[&str]) -> Result<Vec<Arc<[f32]>>, E>,
    embed_fresh: impl Fn(&str) -> Result<Arc<[f32]>, E>,
    only_fold: Option<&str>,
    latency_samples: usize,
    opts: HeadTraining,
    mut progress: impl FnMut(&str),
) -> Result<ClassifierReport, EvalError> {
    let enc = |e: E| EvalError::Encoder(e.to_string());
    let folds: Vec<(Vec<usize>, Vec<usize>)> =
        if rows.iter().any(|r| matches!(r.group, Group::Fold(_))) {
            let names: BTreeSet<&Group> = rows.iter().map(|r| &r.group).collect();
            names
                .into_iter()
                .filter(|g| match (g, only_fold) {
                    (Group::Fold(name), Some(want)) => {
                        name == want || name.ends_with(&format!("_{want}"))
                    }
                    _ => true,
                })
                .map(|g| {
                    let (test, train): (Vec<usize>, Vec<usize>) =
                        (0..rows.len()).partition(|&i| &rows[i].group == g);
                    (train, test)
                })
                .collect()
        } else {
            let (train, test): (Vec<usize>, Vec<usize>) = (0..rows.len())
                .filter(|&i| rows[i].group != Group::Fold(String::new()))
                .partition(|&i| rows[i].group == Group::Train);
            vec![(train, test)]
        };
    if folds.is_empty() || folds.iter().any(|(tr, te)| tr.is_empty() || te.is_empty()) {
        return Err(EvalError::Data {
            file: "data".into(),
            message: "need both training and test rows (check split/fold values, and --fold)"
                .into(),
        });
    }

    progress(&format!("embedding {} texts", rows.len()));
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let mut vecs = Vec::with_capacity(rows.len());
    for chunk in texts.chunks(256) {
        vecs.extend(embed(chunk).map_err(enc)?);
    }

    let (mut route_ok, mut domain_ok, mut n) = (0usize, 0usize, 0usize);
    let mut latencies = Vec::new();
    for (k, (train, test)) in folds.iter().enumerate() {
        progress(&format!(
            "fold {}/{}: training on {} examples",
            k + 1,
            folds.len(),
            train.len()
        ));
        let mut labels: HashMap<String, usize> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let y: Vec<usize> = train
            .iter()
            .map(|&i| {
                let r = rows[i].route();
                *labels.entry(r.clone()).or_insert_with(|| {
                    names.push(r);
                    names.len() - 1
                })
            })
            .collect();
        let x: Vec<&[f32]> = train.iter().map(|&i| &vecs[i][..]).collect();
        let head = SoftmaxHead::train(&x, &y, names.len(), opts);
        for &i in test {
            let probs = head.probs(&vecs[i]);
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(j, _)| j);
            let predicted = best.map(|j| names[j].as_str()).unwrap_or("");
            let truth = rows[i].route();
            route_ok += usize::from(predicted == truth);
            domain_ok += usize::from(predicted.split('/').next() == Some(rows[i].domain.as_str()));
            n += 1;
        }
        if k == 0 {
            for &i in test.iter().take(latency_samples) {
                let t = Instant::now();
                let v = embed_fresh(&rows[i].text).map_err(enc)?;
                let _ = head.probs(&v);
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(ClassifierReport {
        domain_accuracy: domain_ok as f64 / n as f64,
        route_accuracy: route_ok as f64 / n as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        examples: n,
        folds: folds.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_hwu_shape_and_reports_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "fold,split,scenario,intent,text\nKFold_1,testset,alarm,set,wake me up\nKFold_2,testset,alarm,query,what alarms\n").unwrap();
        let rows = load_csv(&p).unwrap();
        assert_eq!(rows[0].route(), "alarm/set");
        assert_eq!(rows[1].group, Group::Fold("KFold_2".into()));

        std::fs::write(
            &p,
            "split,domain,action,text\ntrain,a,b,hello\ntest,a,,hi\n",
        )
        .unwrap();
        let e = load_csv(&p).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("action"), "{e}");
        std::fs::write(&p, "split,domain,text\ntrain,a,hello\n").unwrap();
        assert!(load_csv(&p)
            .unwrap_err()
            .to_string()
            .contains("missing columns"));
        std::fs::write(&p, "").unwrap();
        assert!(load_csv(&p).is_err());
    }

    #[test]
    fn evaluates_a_separable_toy_set() {
        let mut rows = Vec::new();
        for i in 0..40 {
            let (d, a) = if i % 2 == 0 {
                ("x", "one")
            } else {
                ("y", "two")
            };
            rows.push(Labelled {
                text: format!("{d}{i}"),
                domain: d.into(),
                action: a.into(),
                group: if i < 30 { Group::Train } else { Group::Test },
            });
        }
        let vec_of = |t: &str| -> Arc<[f32]> {
            Arc::from(if t.starts_with('x') {
                vec![1.0f32, 0.1]
            } else {
                vec![0.1, 1.0]
            })
        };
        let r = evaluate(
            &rows,
            |ts: &[&str]| Ok::<_, String>(ts.iter().map(|t| vec_of(t)).collect()),
            |t: &str| Ok::<_, String>(vec_of(t)),
            None,
            5,
            HeadTraining::default(),
            |_| {},
        )
        .unwrap();
        assert_eq!(r.examples, 10);
        assert_eq!(r.route_accuracy, 1.0);
        assert_eq!(r.domain_accuracy, 1.0);
        assert_eq!(r.folds, 1);
    }
}
