//! Routing policies: what a route (`domain/action`) may use, in rank order.
//!
//! [`PolicySpec`] is what an operator writes (config file or admin API body); [`Policy`] is a
//! stored row. [`PolicySpec::problems`] is the one validation both paths share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A policy as written by an operator. The admin API's request body and a config entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub domain: String,
    pub action: String,
    /// What the route is for; the classifier reads it.
    #[serde(default)]
    pub description: String,
    /// Example utterances for this route (optional).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Candidate model ids in rank order.
    pub models: Vec<String>,
    /// Higher first when policies are listed or compete.
    #[serde(default)]
    pub priority: i32,
    /// Optional spend cap (USD) for this route.
    #[serde(default)]
    pub budget_usd: Option<f64>,
}

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub id: i64,
    pub domain: String,
    pub action: String,
    pub description: String,
    pub examples: Vec<String>,
    pub models: Vec<String>,
    pub priority: i32,
    pub budget_usd: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Policy {
    /// The route name the classifier uses: `domain/action`.
    pub fn route(&self) -> String {
        format!("{}/{}", self.domain, self.action)
    }
}

/// One thing wrong with a [`PolicySpec`], with the field it concerns (relative to the policy).
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyProblem {
    /// `models[i]` names a model no provider or executor serves.
    UnknownModel { field: String, model: String },
    /// Any other invalid value.
    Invalid { field: String, message: String },
}

impl PolicyProblem {
    pub fn field(&self) -> &str {
        match self {
            Self::UnknownModel { field, .. } | Self::Invalid { field, .. } => field,
        }
    }
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownModel { field, model } => {
                write!(f, "{field}: model '{model}' is not served by any provider")
            }
            Self::Invalid { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

/// Longest accepted `domain` or `action`.
pub const MAX_NAME_CHARS: usize = 100;

impl PolicySpec {
    /// Every problem with this spec; empty means valid. `is_known` says whether a model id is
    /// routable (served by a provider or an executor).
    pub fn problems(&self, is_known: &dyn Fn(&str) -> bool) -> Vec<PolicyProblem> {
        let mut out = Vec::new();
        let invalid = |out: &mut Vec<PolicyProblem>, field: String, message: &str| {
            out.push(PolicyProblem::Invalid {
                field,
                message: message.to_string(),
            })
        };
        for (field, value) in [("domain", &self.domain), ("action", &self.action)] {
            if value.trim().is_empty() {
                invalid(&mut out, field.into(), "must not be empty");
            } else if value.trim() != value {
                invalid(
                    &mut out,
                    field.into(),
                    "must not start or end with whitespace",
                );
            } else if value.contains('/') {
                invalid(
                    &mut out,
                    field.into(),
                    "must not contain '/' (the route name is domain/action)",
                );
            } else if value.chars().count() > MAX_NAME_CHARS {
                invalid(&mut out, field.into(), "is longer than 100 characters");
            }
        }
        if self.models.is_empty() {
            invalid(&mut out, "models".into(), "must name at least one model");
        }
        if let Some(b) = self.budget_usd {
            if !b.is_finite() || b < 0.0 {
                invalid(
                    &mut out,
                    "budget_usd".into(),
                    "must be a finite number >= 0",
                );
            }
        }
        for (i, e) in self.examples.iter().enumerate() {
            if e.trim().is_empty() {
                invalid(&mut out, format!("examples[{i}]"), "must not be empty");
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].contains(m) {
                invalid(&mut out, format!("models[{i}]"), "is listed twice");
            } else if !is_known(m) {
                out.push(PolicyProblem::UnknownModel {
                    field: format!("models[{i}]"),
                    model: m.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(models: &[&str]) -> PolicySpec {
        PolicySpec {
            domain: "programming".into(),
            action: "code-generation".into(),
            description: "writing new code".into(),
            examples: vec![],
            models: models.iter().map(|s| s.to_string()).collect(),
            priority: 0,
            budget_usd: None,
        }
    }

    #[test]
    fn names_the_unknown_model() {
        let p = spec(&["a", "ghost"]).problems(&|m| m == "a");
        assert_eq!(
            p,
            vec![PolicyProblem::UnknownModel {
                field: "models[1]".into(),
                model: "ghost".into()
            }]
        );
    }

    #[test]
    fn rejects_bad_names_and_empty_models() {
        let mut s = spec(&[]);
        s.domain = "a/b".into();
        s.action = " ".into();
        let fields: Vec<_> = s
            .problems(&|_| true)
            .iter()
            .map(|p| p.field().to_string())
            .collect();
        assert_eq!(fields, vec!["domain", "action", "models"]);
    }
}
