//! Feature extractor: what a conversation says about code. The host names each feature
//! `code-features.<name>` (the plugin's configured name, a dot, the feature).
//!
//! | feature | value |
//! |---|---|
//! | `has_code` | 1 when any turn holds a fenced block or lines that read as code, else 0 |
//! | `code_lines` | lines inside fenced blocks plus code-looking lines outside them, all turns |
//! | `languages` | how many distinct languages were recognised (fence tags and keywords) |
//! | `lang_<name>` | 1 for each recognised language (`rust`, `python`, `javascript`, `typescript`, `go`, `java`, `c`, `cpp`, `csharp`, `sql`, `shell`, `html`, `yaml`, `json`) |
//! | `asks_for_tool_use` | 1 when the latest user turn asks to run, execute, search, open, fetch or edit something, or the conversation already holds tool turns |
//! | `conversation_depth` | number of user turns |
//!
//! Config keys: none. The work is one pass over the text, well under the host's deadline.

wit_bindgen::generate!({ world: "feature-extractor", path: "../../wit/v0.1.0" });

use dualrouter::plugin::types::{Conversation, Feature};
use exports::dualrouter::plugin::extractor_api::Guest;

struct CodeFeatures;

const LANGS: &[&str] = &[
    "rust",
    "python",
    "javascript",
    "typescript",
    "go",
    "java",
    "c",
    "cpp",
    "csharp",
    "sql",
    "shell",
    "html",
    "yaml",
    "json",
];

/// The language a fence tag names, if it is one we know.
fn fence_lang(tag: &str) -> Option<usize> {
    let tag = tag.trim().to_ascii_lowercase();
    let name = match tag.as_str() {
        "rs" | "rust" => "rust",
        "py" | "python" | "python3" => "python",
        "js" | "javascript" | "jsx" | "node" => "javascript",
        "ts" | "typescript" | "tsx" => "typescript",
        "go" | "golang" => "go",
        "java" | "kotlin" => "java",
        "c" | "h" => "c",
        "cpp" | "c++" | "cc" | "hpp" => "cpp",
        "cs" | "csharp" | "c#" => "csharp",
        "sql" | "postgres" | "sqlite" => "sql",
        "sh" | "bash" | "shell" | "zsh" | "console" => "shell",
        "html" | "xml" | "svg" => "html",
        "yaml" | "yml" => "yaml",
        "json" | "jsonc" => "json",
        _ => return None,
    };
    LANGS.iter().position(|l| *l == name)
}

/// The language a single line of code suggests by its keywords, if any.
fn line_lang(line: &str) -> Option<usize> {
    let l = line.trim_start();
    let name = if l.starts_with("fn ")
        || l.starts_with("pub fn ")
        || l.starts_with("let mut ")
        || l.starts_with("impl ")
        || l.starts_with("use std::")
    {
        "rust"
    } else if l.starts_with("def ")
        || l.starts_with("import ") && !l.contains(';')
        || l.starts_with("from ") && l.contains(" import ")
        || l.starts_with("elif ")
    {
        "python"
    } else if l.starts_with("function ")
        || l.starts_with("const ") && l.contains("=>")
        || l.contains("console.log(")
    {
        "javascript"
    } else if l.starts_with("interface ") && l.ends_with('{') || l.contains(": string") {
        "typescript"
    } else if l.starts_with("func ") || l.starts_with("package main") || l.contains(":= ") {
        "go"
    } else if l.starts_with("public class ") || l.starts_with("public static void") {
        "java"
    } else if l.starts_with("#include") {
        if l.contains("<iostream>") || l.contains("<vector>") {
            "cpp"
        } else {
            "c"
        }
    } else if l.contains("std::cout") || l.starts_with("template<") {
        "cpp"
    } else if l.starts_with("using System") || l.starts_with("namespace ") && l.ends_with('{') {
        "csharp"
    } else {
        let upper = l.to_ascii_uppercase();
        if upper.starts_with("SELECT ") && upper.contains(" FROM ")
            || upper.starts_with("INSERT INTO ")
            || upper.starts_with("CREATE TABLE ")
        {
            "sql"
        } else if l.starts_with("$ ") || l.starts_with("#!/bin/") || l.starts_with("sudo ") {
            "shell"
        } else if l.starts_with("<html") || l.starts_with("<div") || l.starts_with("<!DOCTYPE") {
            "html"
        } else {
            return None;
        }
    };
    LANGS.iter().position(|x| *x == name)
}

/// Whether a line outside a fence reads as code: a known language's keyword, or the punctuation
/// code ends lines with.
fn looks_like_code(line: &str) -> bool {
    let t = line.trim();
    if t.len() < 3 {
        return false;
    }
    line_lang(t).is_some()
        || (t.ends_with(';') || t.ends_with('{') || t == "}" || t.ends_with("};"))
            && t.chars().any(|c| matches!(c, '(' | '=' | '{' | '}'))
}

const TOOL_VERBS: &[&str] = &[
    "run ",
    "execute",
    "search the",
    "search for",
    "look up",
    "browse",
    "open the",
    "fetch",
    "download",
    "install",
    "deploy",
    "commit",
    "edit the file",
    "create a file",
    "write to the file",
    "call the api",
    "use the tool",
    "use a tool",
    "grep",
    "curl ",
    "run the tests",
];

fn asks_for_tools(text: &str) -> bool {
    let lower = text.to_lowercase();
    TOOL_VERBS.iter().any(|v| lower.contains(v))
}

fn extract(conversation: &Conversation) -> Vec<Feature> {
    let mut code_lines = 0u32;
    let mut seen = [false; LANGS.len()];
    let mut tool_turns = false;
    let mut user_turns = 0u32;
    for m in &conversation.messages {
        if m.role == "tool" {
            tool_turns = true;
        }
        if m.role == "user" {
            user_turns += 1;
        }
        let mut in_fence = false;
        for line in m.content.lines() {
            let t = line.trim_start();
            if let Some(tag) = t.strip_prefix("```") {
                if !in_fence {
                    if let Some(i) = fence_lang(tag) {
                        seen[i] = true;
                    }
                }
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                code_lines += 1;
                if let Some(i) = line_lang(t) {
                    seen[i] = true;
                }
            } else if looks_like_code(line) {
                code_lines += 1;
                if let Some(i) = line_lang(t) {
                    seen[i] = true;
                }
            }
        }
    }
    let latest_user = conversation
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let bool_f = |b: bool| if b { 1.0 } else { 0.0 };
    let languages = seen.iter().filter(|s| **s).count();
    let mut out = vec![
        Feature {
            name: "has_code".into(),
            value: bool_f(code_lines > 0),
        },
        Feature {
            name: "code_lines".into(),
            value: code_lines as f32,
        },
        Feature {
            name: "languages".into(),
            value: languages as f32,
        },
        Feature {
            name: "asks_for_tool_use".into(),
            value: bool_f(tool_turns || asks_for_tools(latest_user)),
        },
        Feature {
            name: "conversation_depth".into(),
            value: user_turns as f32,
        },
    ];
    for (i, lang) in LANGS.iter().enumerate() {
        if seen[i] {
            out.push(Feature {
                name: format!("lang_{lang}"),
                value: 1.0,
            });
        }
    }
    out
}

impl Guest for CodeFeatures {
    fn extract(conversation: Conversation) -> Vec<Feature> {
        extract(&conversation)
    }
}

export!(CodeFeatures);
