//! Config: parse strictly ([`raw`]), then validate into runtime types ([`validated`]).

pub mod arch_router;
pub mod encoder;
pub mod log;
pub mod mirt;
pub mod plugins;
pub mod raw;
pub mod reload;
pub mod retention;
pub mod routing;
pub mod telemetry;
pub mod validated;

pub use arch_router::ArchRouterSettings;

/// The default `database:` value.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://dualrouter.db";

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

use std::fmt;
use std::path::Path;

pub use validated::{Config, Cost, Limits, Model, Provider};

/// The config layer's one error type. Each message names the file and the field path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    Parse {
        path: String,
        field: String,
        message: String,
    },
    #[error("invalid config:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Reads, parses and validates a config file for `serve`: secrets come from the process
/// environment and must all be set; relative paths are the file's folder's.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, validated::Secrets::Required)
}

/// [`load`] for a command that needs only the secrets that are set ([`validated::Secrets`]).
pub fn load_with(path: &Path, secrets: validated::Secrets) -> Result<Config, ConfigError> {
    let raw = read(path)?;
    validated::validate_with(raw, &|name| std::env::var(name).ok(), secrets)
}

/// Reads and parses a config file (no validation, no secrets), its relative paths made the
/// file's folder's: `dualrouter serve --config /etc/dualrouter/config.yaml` finds
/// `checkpoints/default.json` in `/etc/dualrouter/` whatever the working directory.
pub fn read(path: &Path) -> Result<raw::RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut raw = parse(&text, &path.display().to_string())?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = std::path::absolute(folder).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    raw.resolve_paths(&folder);
    Ok(raw)
}

/// Parses YAML into the raw config; an unknown or mistyped key is an error naming its path.
pub fn parse(text: &str, origin: &str) -> Result<raw::RawConfig, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::Parse {
            path: origin.to_string(),
            field: if field == "." {
                "(top level)".into()
            } else {
                field
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// A secret (API key, admin token, client key). Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that must send it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (no early exit on the first differing byte).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let ours = self.0.as_bytes();
        // Lengths are compared in constant time too; the byte comparison runs over
        // equal-length slices only, so the loop does not reveal where they differ.
        let len_eq = (ours.len() as u64).ct_eq(&(candidate.len() as u64));
        let padded: Vec<u8> = candidate
            .iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(ours.len())
            .collect();
        (len_eq & ours.ct_eq(&padded)).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:0
limits: { max_body_bytes: 1024 }
providers:
  - name: up
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: TEST_KEY
    models:
      - { id: small, upstream_id: vendor/small, cost_per_mtok: { input: 0.1, output: 0.2 } }
"#;

    fn env(name: &str) -> Option<String> {
        (name == "TEST_KEY").then(|| "sk-test".to_string())
    }

    #[test]
    fn parses_and_validates() {
        let raw = parse(GOOD, "t.yaml").unwrap();
        let cfg = validated::validate(raw, &env).unwrap();
        let m = &cfg.models["small"];
        assert_eq!(m.upstream_id, "vendor/small");
        assert_eq!(m.provider().unwrap().base_path, "/v1");
        assert_eq!(
            m.provider().unwrap().api_key.as_ref().unwrap().expose(),
            "sk-test"
        );
        assert_eq!(cfg.limits.max_body_bytes, 1024);
    }

    #[test]
    fn anthropic_kind_is_accepted() {
        let text = GOOD.replace("kind: openai", "kind: anthropic");
        let cfg = validated::validate(parse(&text, "t.yaml").unwrap(), &env).unwrap();
        assert_eq!(
            cfg.models["small"].provider().unwrap().kind,
            raw::ProviderKind::Anthropic
        );
        let text = GOOD.replace("kind: openai", "kind: gemini");
        assert!(parse(&text, "t.yaml").is_err());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = GOOD.replace("cost_per_mtok: { input", "cost_per_mtok: { inptu");
        let err = parse(&text, "t.yaml").unwrap_err().to_string();
        assert!(
            err.contains("providers[0].models[0].cost_per_mtok"),
            "{err}"
        );
        assert!(err.contains("inptu"), "{err}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = GOOD
            .replace("http://127.0.0.1:9/v1", "ftp://x")
            .replace("max_body_bytes: 1024", "max_body_bytes: 0");
        let raw = parse(&text, "t.yaml").unwrap();
        let err = validated::validate(raw, &|_| None).unwrap_err().to_string();
        assert!(err.contains("providers[0].base_url"), "{err}");
        assert!(err.contains("limits.max_body_bytes"), "{err}");
    }

    #[test]
    fn missing_key_env_is_named() {
        let raw = parse(GOOD, "t.yaml").unwrap();
        let err = validated::validate(raw, &|_| None).unwrap_err().to_string();
        assert!(
            err.contains("providers[0].api_key_env: environment variable TEST_KEY"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-canary".into());
        assert!(!format!("{s:?} {s}").contains("canary"));
        assert!(s.matches(b"sk-canary"));
        assert!(!s.matches(b"sk-canar"));
        assert!(!s.matches(b"sk-canary1"));
        assert!(!s.matches(b""));
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
