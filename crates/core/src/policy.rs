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
        // PostgreSQL cannot store U+0000 in text or JSONB (the insert would fail with a 500);
        // refuse it on every backend so both answer alike.
        let texts = [
            ("domain".to_string(), &self.domain),
            ("description".into(), &self.description),
        ]
        .into_iter()
        .chain(std::iter::once(("action".to_string(), &self.action)))
        .chain(
            self.examples
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("examples[{i}]"), e)),
        )
        .chain(
            self.models
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("models[{i}]"), m)),
        );
        for (field, value) in texts {
            if value.contains('\0') {
                invalid(&mut out, field, NUL_MESSAGE);
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.contains('\0') {
                continue;
            }
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

/// Why a text with U+0000 is refused.
pub const NUL_MESSAGE: &str = "must not contain a NUL character (U+0000)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_in_every_text_field() {
        let base = spec(&["m"]);
        let mut cases = Vec::new();
        for field in [
            "domain",
            "action",
            "description",
            "examples[0]",
            "models[0]",
        ] {
            let mut s = base.clone();
            match field {
                "domain" => s.domain = "a\0b".into(),
                "action" => s.action = "a\0b".into(),
                "description" => s.description = "x\0' OR 1=1".into(),
                "examples[0]" => s.examples = vec!["e\0".into()],
                _ => s.models = vec!["m\0".into()],
            }
            cases.push((field, s));
        }
        for (field, s) in cases {
            let problems = s.problems(&|m| m == "m");
            assert!(
                problems.iter().any(|p| matches!(p,
                    PolicyProblem::Invalid { field: f, message } if f == field && message == NUL_MESSAGE)),
                "{field}: {problems:?}"
            );
        }
        assert!(base.problems(&|m| m == "m").is_empty());
    }

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
