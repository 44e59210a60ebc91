//! Tool names between a client and an upstream that groups tools differently.
//!
//! A Responses client may group functions in a `namespace` and offer free-form `custom` tools;
//! chat completions and Anthropic Messages have neither. Such an upstream sees each function by
//! its own name (or `NAMESPACE__NAME` when two namespaces share a name) and each custom tool as
//! a function taking `{"input": string}`. [`ToolNames`] maps the calls in its answer back to the
//! client's tools.

use std::collections::HashMap;

use crate::ir::{CallKind, Request, Tool};

/// A tool as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTool {
    pub name: String,
    pub namespace: Option<String>,
    pub kind: CallKind,
}

#[derive(Debug, Clone, Default)]
pub struct ToolNames {
    /// Upstream name → the client's tool.
    back: HashMap<String, ClientTool>,
    /// (namespace, name) → upstream name, where they differ.
    forth: HashMap<(String, String), String>,
}

impl ToolNames {
    pub fn new(req: &Request) -> Self {
        // Plain functions need no entry: an upstream calls them by the client's own name, which
        // is what [`Self::upstream`] and [`Self::client`] answer for a name they do not hold.
        let plain = |t: &Tool| match t {
            Tool::Function { namespace, .. } => namespace.is_none(),
            Tool::Custom { .. } => false,
            Tool::Hosted { .. } => true,
        };
        if req.callable_tools().all(plain) {
            return Self::default();
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in req.callable_tools() {
            if let Some(n) = t.name() {
                *counts.entry(n).or_default() += 1;
            }
        }
        let mut names = Self::default();
        for t in req.callable_tools() {
            let (name, namespace, kind) = match t {
                Tool::Function {
                    name, namespace, ..
                } => (name, namespace.as_ref(), CallKind::Function),
                Tool::Custom { name, .. } => (name, None, CallKind::Custom),
                Tool::Hosted { .. } => continue,
            };
            let upstream = match namespace {
                Some(ns) if counts.get(name.as_str()).copied().unwrap_or(0) > 1 => {
                    let flat = format!("{ns}__{name}");
                    names.forth.insert((ns.clone(), name.clone()), flat.clone());
                    flat
                }
                _ => name.clone(),
            };
            names.back.insert(
                upstream,
                ClientTool {
                    name: name.clone(),
                    namespace: namespace.cloned(),
                    kind,
                },
            );
        }
        names
    }

    /// The name an upstream without namespaces knows a tool by.
    pub fn upstream(&self, name: &str, namespace: Option<&str>) -> String {
        namespace
            .and_then(|ns| self.forth.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// The client's tool for a name the upstream called.
    pub fn client(&self, upstream: &str) -> ClientTool {
        self.back.get(upstream).cloned().unwrap_or(ClientTool {
            name: upstream.to_string(),
            namespace: None,
            kind: CallKind::Function,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str, ns: Option<&str>) -> Tool {
        Tool::Function {
            name: name.into(),
            description: None,
            parameters: json!({}).into(),
            strict: None,
            namespace: ns.map(str::to_string),
            cache_control: None,
        }
    }

    #[test]
    fn namespaced_names_flatten_only_on_collision() {
        let req = Request {
            tools: vec![
                f("close", Some("agents")),
                f("spawn", Some("agents")),
                f("close", Some("files")),
                Tool::Custom {
                    name: "apply_patch".into(),
                    description: None,
                    format: None,
                },
            ],
            ..Default::default()
        };
        let n = ToolNames::new(&req);
        assert_eq!(n.upstream("spawn", Some("agents")), "spawn");
        assert_eq!(n.upstream("close", Some("agents")), "agents__close");
        assert_eq!(n.upstream("close", Some("files")), "files__close");
        assert_eq!(n.client("files__close").namespace.as_deref(), Some("files"));
        assert_eq!(n.client("files__close").name, "close");
        assert_eq!(n.client("spawn").namespace.as_deref(), Some("agents"));
        assert_eq!(n.client("apply_patch").kind, CallKind::Custom);
        assert_eq!(n.client("unknown").name, "unknown");
    }
}
