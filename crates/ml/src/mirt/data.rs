//! Outcome data: which model got which prompt right, and at what cost.
//!
//! Shapes accepted (detected from the header / extension):
//! - wide CSV (the files of `../shared/data/routing/`): a prompt column (`prompt_text`, `prompt` or `question`), one
//!   score column per model, optional `<model>|total_cost`, optional `split`; known id/meta columns are ignored.
//! - long CSV: columns `prompt`, `model`, `score`, optional `cost`, `split`.
//! - JSONL: one object per line with the same keys as the long CSV.
//!
//! An empty score cell means "no outcome" (kept, masked out). Anything else that is not a number in [0, 1] (NaN,
//! text), a cost column for a model with no score column, a missing prompt column or an empty file is a
//! [`DataError`] naming the file and the row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: row {row}: {msg}")]
    Row {
        file: PathBuf,
        row: u64,
        msg: String,
    },
    #[error("{file}: {msg}")]
    File { file: PathBuf, msg: String },
}

/// One prompt with its outcomes, one slot per model of [`Dataset::models`].
#[derive(Debug, Clone)]
pub struct Row {
    /// Row number in the file (1 = first data row).
    pub row: u64,
    pub prompt: String,
    pub split: Option<String>,
    /// Benchmark / eval name when the file has one (for reports only, never a routing feature).
    pub group: Option<String>,
    pub scores: Vec<Option<f32>>,
    pub costs: Vec<Option<f64>>,
}

impl Row {
    pub fn complete(&self) -> bool {
        self.scores.iter().all(Option::is_some)
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub source: PathBuf,
    pub models: Vec<String>,
    pub rows: Vec<Row>,
    /// False when the file has no cost at all: every model then costs the same (1.0 per query).
    pub has_cost: bool,
}

const PROMPT_COLS: [&str; 4] = ["prompt_text", "prompt", "question", "text"];
const META_COLS: [&str; 9] = [
    "sample_id",
    "eval_name",
    "split",
    "benchmark",
    "idx",
    "id",
    "oracle_model_to_route_to",
    "category",
    "group",
];
const COST_SUFFIX: &str = "|total_cost";

fn row_err(file: &Path, row: u64, msg: impl Into<String>) -> DataError {
    DataError::Row {
        file: file.to_path_buf(),
        row,
        msg: msg.into(),
    }
}

fn file_err(file: &Path, msg: impl Into<String>) -> DataError {
    DataError::File {
        file: file.to_path_buf(),
        msg: msg.into(),
    }
}

fn parse_score(file: &Path, row: u64, col: &str, s: &str) -> Result<Option<f32>, DataError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s
        .parse()
        .map_err(|_| row_err(file, row, format!("column `{col}`: `{s}` is not a number")))?;
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(row_err(
            file,
            row,
            format!("column `{col}`: score `{s}` is not a number in [0, 1]"),
        ));
    }
    Ok(Some(v as f32))
}

fn parse_cost(file: &Path, row: u64, col: &str, s: &str) -> Result<Option<f64>, DataError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s
        .parse()
        .map_err(|_| row_err(file, row, format!("column `{col}`: `{s}` is not a number")))?;
    if !v.is_finite() || v < 0.0 {
        return Err(row_err(
            file,
            row,
            format!("column `{col}`: cost `{s}` is not a finite number ≥ 0"),
        ));
    }
    Ok(Some(v))
}

impl Dataset {
    /// Read a file, choosing the shape from its extension (`.jsonl`/`.ndjson`) or CSV header.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
        if text.trim().is_empty() {
            return Err(file_err(path, "empty file: no header and no rows"));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let ds = if ext == "jsonl" || ext == "ndjson" {
            Self::from_jsonl(path, &text)?
        } else {
            Self::from_csv(path, &text)?
        };
        if ds.rows.is_empty() {
            return Err(file_err(path, "no data rows"));
        }
        Ok(ds)
    }

    fn from_csv(path: &Path, text: &str) -> Result<Self, DataError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| file_err(path, format!("header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let idx = |name: &str| headers.iter().position(|h| h == name);
        if idx("model").is_some() && idx("score").is_some() {
            return Self::from_long_csv(path, rdr, &headers);
        }
        let prompt_col = PROMPT_COLS
            .iter()
            .find_map(|c| idx(c))
            .ok_or_else(|| {
                row_err(
                    path,
                    0,
                    "missing column: no prompt column (`prompt_text`, `prompt` or `question`) in the header",
                )
            })?;
        let split_col = idx("split");
        let group_col = idx("eval_name").or_else(|| idx("benchmark"));
        let mut models = Vec::new();
        let mut score_cols = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            if i == prompt_col || META_COLS.contains(&h.as_str()) || h.ends_with(COST_SUFFIX) {
                continue;
            }
            if h.is_empty() {
                return Err(row_err(
                    path,
                    0,
                    format!("missing column: header {} is empty", i + 1),
                ));
            }
            models.push(h.clone());
            score_cols.push(i);
        }
        if models.is_empty() {
            return Err(row_err(path, 0, "missing column: no model score columns"));
        }
        let mut cost_cols: Vec<Option<usize>> = vec![None; models.len()];
        for (i, h) in headers.iter().enumerate() {
            if let Some(m) = h.strip_suffix(COST_SUFFIX) {
                let j = models.iter().position(|x| x == m).ok_or_else(|| {
                    row_err(
                        path,
                        0,
                        format!("unknown model `{m}` in cost column `{h}`: no score column for it"),
                    )
                })?;
                cost_cols[j] = Some(i);
            }
        }
        let has_cost = cost_cols.iter().any(Option::is_some);
        if has_cost {
            if let Some(j) = cost_cols.iter().position(Option::is_none) {
                return Err(row_err(
                    path,
                    0,
                    format!(
                        "missing column: `{}{COST_SUFFIX}` (other models have costs)",
                        models[j]
                    ),
                ));
            }
        }
        let mut rows = Vec::new();
        for (n, rec) in rdr.records().enumerate() {
            let row = n as u64 + 1;
            let rec = rec.map_err(|e| row_err(path, row, e.to_string()))?;
            let get = |i: usize| rec.get(i).unwrap_or("");
            let prompt = get(prompt_col).to_string();
            let mut scores = Vec::with_capacity(models.len());
            let mut costs = Vec::with_capacity(models.len());
            for (j, &c) in score_cols.iter().enumerate() {
                scores.push(parse_score(path, row, &models[j], get(c))?);
                costs.push(match cost_cols[j] {
                    Some(cc) => parse_cost(path, row, &headers[cc], get(cc))?,
                    None => Some(1.0),
                });
            }
            rows.push(Row {
                row,
                prompt,
                split: split_col.map(|i| get(i).trim().to_string()),
                group: group_col.map(|i| get(i).trim().to_string()),
                scores,
                costs,
            });
        }
        Ok(Self {
            source: path.to_path_buf(),
            models,
            rows,
            has_cost,
        })
    }

    fn from_long_csv(
        path: &Path,
        mut rdr: csv::Reader<&[u8]>,
        headers: &[String],
    ) -> Result<Self, DataError> {
        let idx = |name: &str| headers.iter().position(|h| h == name);
        let p = idx("prompt").ok_or_else(|| row_err(path, 0, "missing column: `prompt`"))?;
        let (m, s) = (idx("model"), idx("score"));
        let (Some(m), Some(s)) = (m, s) else {
            return Err(row_err(path, 0, "missing column: `model` or `score`"));
        };
        let (c, sp) = (idx("cost"), idx("split"));
        let mut b = LongBuilder::default();
        for (n, rec) in rdr.records().enumerate() {
            let row = n as u64 + 1;
            let rec = rec.map_err(|e| row_err(path, row, e.to_string()))?;
            let get = |i: usize| rec.get(i).unwrap_or("");
            let model = get(m).trim();
            if model.is_empty() {
                return Err(row_err(path, row, "empty `model`"));
            }
            let score = parse_score(path, row, "score", get(s))?
                .ok_or_else(|| row_err(path, row, "empty `score`"))?;
            let cost = match c {
                Some(c) => parse_cost(path, row, "cost", get(c))?,
                None => None,
            };
            b.add(
                row,
                get(p),
                model,
                score,
                cost,
                sp.map(|i| get(i).trim().to_string()),
            );
        }
        Ok(b.finish(path))
    }

    fn from_jsonl(path: &Path, text: &str) -> Result<Self, DataError> {
        let mut b = LongBuilder::default();
        for (n, line) in text.lines().enumerate() {
            let row = n as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| row_err(path, row, format!("not JSON: {e}")))?;
            let field = |k: &str| v.get(k).filter(|x| !x.is_null());
            let prompt = field("prompt")
                .and_then(|x| x.as_str())
                .ok_or_else(|| row_err(path, row, "missing column: `prompt` (a string)"))?;
            let model = field("model")
                .and_then(|x| x.as_str())
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| row_err(path, row, "missing column: `model` (a string)"))?;
            let score =
                field("score").ok_or_else(|| row_err(path, row, "missing column: `score`"))?;
            let score = match score {
                serde_json::Value::Number(n) => parse_score(path, row, "score", &n.to_string())?,
                serde_json::Value::String(s) => parse_score(path, row, "score", s)?,
                _ => None,
            }
            .ok_or_else(|| row_err(path, row, "`score` is not a number in [0, 1]"))?;
            let cost = match field("cost") {
                None => None,
                Some(serde_json::Value::Number(n)) => {
                    parse_cost(path, row, "cost", &n.to_string())?
                }
                Some(other) => {
                    return Err(row_err(
                        path,
                        row,
                        format!("`cost` is not a number: {other}"),
                    ))
                }
            };
            let split = field("split").and_then(|x| x.as_str()).map(str::to_string);
            b.add(row, prompt, model.trim(), score, cost, split);
        }
        Ok(b.finish(path))
    }

    /// Rows of one split (all rows when `split` is None or the file has no split column).
    pub fn split(&self, split: Option<&str>) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| match (split, &r.split) {
                (Some(want), Some(have)) => have == want,
                _ => true,
            })
            .collect()
    }

    /// Whether the file names any split at all.
    pub fn has_splits(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.split.as_deref().is_some_and(|s| !s.is_empty()))
    }

    /// Each model's mean cost per query over the given rows (1.0 when the file has no costs).
    pub fn mean_prices(&self, rows: &[&Row]) -> Vec<f64> {
        (0..self.models.len())
            .map(|j| {
                let v: Vec<f64> = rows.iter().filter_map(|r| r.costs[j]).collect();
                if v.is_empty() {
                    1.0
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            })
            .collect()
    }
}

/// A long-format prompt being assembled: (row, prompt, split, model → (score, cost)).
type LongRow = (
    u64,
    String,
    Option<String>,
    HashMap<usize, (f32, Option<f64>)>,
);

#[derive(Default)]
struct LongBuilder {
    models: Vec<String>,
    model_idx: HashMap<String, usize>,
    keys: HashMap<(String, Option<String>), usize>,
    rows: Vec<LongRow>,
    any_cost: bool,
}

impl LongBuilder {
    fn add(
        &mut self,
        row: u64,
        prompt: &str,
        model: &str,
        score: f32,
        cost: Option<f64>,
        split: Option<String>,
    ) {
        let m = match self.model_idx.get(model) {
            Some(&m) => m,
            None => {
                self.models.push(model.to_string());
                self.model_idx
                    .insert(model.to_string(), self.models.len() - 1);
                self.models.len() - 1
            }
        };
        self.any_cost |= cost.is_some();
        let key = (prompt.to_string(), split.clone());
        let r = match self.keys.get(&key) {
            Some(&r) => r,
            None => {
                self.rows
                    .push((row, prompt.to_string(), split, HashMap::new()));
                self.keys.insert(key, self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        self.rows[r].3.insert(m, (score, cost));
    }

    fn finish(self, path: &Path) -> Dataset {
        let n = self.models.len();
        let any_cost = self.any_cost;
        let rows = self
            .rows
            .into_iter()
            .map(|(row, prompt, split, cells)| {
                let mut scores = vec![None; n];
                let mut costs = vec![if any_cost { None } else { Some(1.0) }; n];
                for (m, (s, c)) in cells {
                    scores[m] = Some(s);
                    if any_cost {
                        costs[m] = c;
                    }
                }
                Row {
                    row,
                    prompt,
                    split,
                    group: None,
                    scores,
                    costs,
                }
            })
            .collect();
        Dataset {
            source: path.to_path_buf(),
            models: self.models,
            rows,
            has_cost: any_cost,
        }
    }
}
