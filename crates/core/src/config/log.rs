//! The `log:` section: the log's format (read at start) and its level (applied on every reload).

use serde::{Deserialize, Serialize};

/// The `log:` section of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable lines) or `json` (one JSON object per line). Read at start.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `warn,dualrouter::access=info`, …). Set: it wins over
    /// `DUALROUTER_LOG`, and a reload applies a change at once. Unset: `DUALROUTER_LOG`, else
    /// `info`.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogSettings {
    /// What is wrong with the section, each with its field path. The filter's syntax is
    /// checked in full where the filter is built (the app's logging module).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(level) = &self.level {
            if level.trim().is_empty() {
                out.push(
                    "log.level: must not be empty (leave it out for DUALROUTER_LOG or info)".into(),
                );
            } else if let Some(c) = level
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "_:=,.-[]{}\"* ".contains(*c)))
            {
                out.push(format!(
                    "log.level: '{c}' has no place in a tracing filter (e.g. info or warn,dualrouter::access=info)"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked() {
        let ok = LogSettings {
            format: LogFormat::Json,
            level: Some("warn,dualrouter::access=info".into()),
        };
        assert!(ok.problems().is_empty());
        let empty = LogSettings {
            level: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(empty.problems().len(), 1);
        let odd = LogSettings {
            level: Some("info;rm".into()),
            ..Default::default()
        };
        assert!(odd.problems()[0].starts_with("log.level:"));
    }

    #[test]
    fn format_names() {
        let s: LogSettings = serde_yaml_ng::from_str("format: json").unwrap();
        assert_eq!(s.format, LogFormat::Json);
        assert!(serde_yaml_ng::from_str::<LogSettings>("format: xml").is_err());
    }
}
