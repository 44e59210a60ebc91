//! What the `agent` behaviour reads of a conversation, in any of the three formats, and the
//! scripted turn it plays.

use serde_json::{json, Value};

/// A tool the request offers.
#[derive(Clone, Debug)]
pub(crate) struct ToolSpec {
    pub name: String,
    /// Its JSON schema (`parameters` / `input_schema`), `Null` when it has none.
    pub params: Value,
}

/// What `agent` needs of a request, whatever its format.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conversation {
    /// The text parts of the latest user message that has text.
    pub user_text: Vec<String>,
    /// The text of the latest tool result, if the conversation has one.
    pub tool_result: Option<String>,
    pub tools: Vec<ToolSpec>,
}

/// The texts of a content value: a string, or an array of parts with a `text` string
/// (`text`, `input_text`, `output_text`), or one such part.
pub(crate) fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                _ => p["text"].as_str().map(str::to_string),
            })
            .collect(),
        Value::Object(_) => content["text"]
            .as_str()
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl Conversation {
    /// A chat completions request: `messages` (`role: tool` results), `tools[].function`.
    pub(crate) fn chat(req: &Value) -> Conversation {
        let msgs = req["messages"].as_array().cloned().unwrap_or_default();
        let user_text = msgs
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .map(|m| texts(&m["content"]))
            .find(|t| t.iter().any(|s| !s.trim().is_empty()))
            .unwrap_or_default();
        let tool_result = msgs
            .iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .map(|m| texts(&m["content"]).join("\n"));
        let tools = req["tools"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        let f = &t["function"];
                        Some(ToolSpec {
                            name: f["name"].as_str()?.to_string(),
                            params: f["parameters"].clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Conversation {
            user_text,
            tool_result,
            tools,
        }
    }

    /// A Messages request: `tool_result` blocks in user messages, `tools[]` with `input_schema`.
    pub(crate) fn anthropic(req: &Value) -> Conversation {
        let msgs = req["messages"].as_array().cloned().unwrap_or_default();
        let user_text = msgs
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .map(|m| match &m["content"] {
                Value::Array(blocks) => blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str().map(str::to_string))
                    .collect(),
                c => texts(c),
            })
            .find(|t: &Vec<String>| t.iter().any(|s| !s.trim().is_empty()))
            .unwrap_or_default();
        let tool_result = msgs
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .rfind(|b| b["type"] == "tool_result")
            .map(|b| texts(&b["content"]).join("\n"));
        let tools = req["tools"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        Some(ToolSpec {
                            name: t["name"].as_str()?.to_string(),
                            params: t["input_schema"].clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Conversation {
            user_text,
            tool_result,
            tools,
        }
    }

    /// A Responses request's items (history included): messages, `function_call_output` and
    /// `custom_tool_call_output` items; function `tools`.
    pub(crate) fn responses(items: &[Value], req: &Value) -> Conversation {
        let user_text = items
            .iter()
            .rev()
            .filter(|i| (i["type"] == "message" || i["type"].is_null()) && i["role"] == "user")
            .map(|i| texts(&i["content"]))
            .find(|t| t.iter().any(|s| !s.trim().is_empty()))
            .unwrap_or_default();
        let tool_result = items
            .iter()
            .rev()
            .find(|i| i["type"] == "function_call_output" || i["type"] == "custom_tool_call_output")
            .map(|i| texts(&i["output"]).join("\n"));
        let tools = req["tools"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t["type"] == "function")
                    .filter_map(|t| {
                        Some(ToolSpec {
                            name: t["name"].as_str()?.to_string(),
                            params: t["parameters"].clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Conversation {
            user_text,
            tool_result,
            tools,
        }
    }
}

/// The agent's move.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Call { name: String, arguments: Value },
    Say(String),
}

/// The scripted turn: a tool call reading the path the user named, or, once a tool result is
/// there, the text `The file says: …`.
pub(crate) fn agent_step(conv: &Conversation) -> Step {
    if let Some(result) = &conv.tool_result {
        return Step::Say(format!("The file says: {}", clean_tool_result(result)));
    }
    let Some(path) = conv
        .user_text
        .iter()
        .find_map(|t| first_path(&strip_tag_blocks(t, None)))
    else {
        return Step::Say("I found no absolute path in your message.".into());
    };
    let tool = |name: &str| conv.tools.iter().find(|t| t.name == name);
    if let Some(t) = tool("Read") {
        return Step::Call {
            name: t.name.clone(),
            arguments: json!({"file_path": path}),
        };
    }
    if let Some(t) = tool("exec_command") {
        return Step::Call {
            name: t.name.clone(),
            arguments: json!({"cmd": format!("cat {path}")}),
        };
    }
    if let Some(t) = conv.tools.iter().find(|t| {
        let n = t.name.to_ascii_lowercase();
        n.contains("shell") || n.contains("bash")
    }) {
        let props = &t.params["properties"];
        let key = ["command", "cmd"]
            .into_iter()
            .find(|k| !props[k].is_null())
            .unwrap_or("command");
        let command = format!("cat {path}");
        let value = if props[key]["type"] == "array" {
            json!(["bash", "-lc", command])
        } else {
            json!(command)
        };
        let mut args = serde_json::Map::new();
        args.insert(key.to_string(), value);
        return Step::Call {
            name: t.name.clone(),
            arguments: Value::Object(args),
        };
    }
    if let Some(t) = conv.tools.first() {
        return Step::Call {
            name: t.name.clone(),
            arguments: json!({"path": path}),
        };
    }
    Step::Say(format!("I have no tool to read {path} with."))
}

/// Removes `<tag>…</tag>` blocks: those named `only`, or any (a name of letters, digits, `_`, `-`).
fn strip_tag_blocks(s: &str, only: Option<&str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            .count();
        let name = &after[..name_len];
        let named =
            name_len > 0 && after[name_len..].starts_with('>') && only.is_none_or(|o| o == name);
        if named {
            let close = format!("</{name}>");
            if let Some(j) = after.find(&close) {
                out.push_str(&rest[..i]);
                rest = &after[j + close.len()..];
                continue;
            }
        }
        out.push_str(&rest[..=i]);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The first absolute path in `text`: a `/` at the start or after whitespace, a quote, a
/// backtick or `(`, followed by neither `/` nor whitespace; it runs to whitespace or a quote,
/// backtick, `<`, `>`, `)`, `]`, `,` or `;`, without trailing `.`, `:`, `!` or `?`.
pub fn first_path(text: &str) -> Option<String> {
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let boundary =
            prev.is_none_or(|p| p.is_whitespace() || matches!(p, '"' | '\'' | '`' | '('));
        prev = Some(c);
        if c != '/' || !boundary {
            continue;
        }
        let rest = &text[i..];
        if rest[1..]
            .chars()
            .next()
            .is_none_or(|n| n == '/' || n.is_whitespace())
        {
            continue;
        }
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                c.is_whitespace()
                    || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')' | ']' | ',' | ';')
            })
            .map(|(j, _)| j)
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(['.', ':', '!', '?']);
        if path.len() > 1 {
            return Some(path.to_string());
        }
    }
    None
}

/// A tool result as the `agent` quotes it: `<system-reminder>` blocks removed, only what follows
/// an `Output:` line when there is one (Codex's `exec_command`), line-number prefixes (`N→`,
/// `N\t`, as Claude Code's `Read` adds them) removed when every line has one, trimmed.
pub fn clean_tool_result(result: &str) -> String {
    let s = strip_tag_blocks(result, Some("system-reminder"));
    let s = match s.split_once("\nOutput:\n") {
        Some((_, out)) => out.to_string(),
        None => s.strip_prefix("Output:\n").map(str::to_string).unwrap_or(s),
    };
    let numbered = |line: &str| -> Option<usize> {
        let t = line.trim_start();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let after = &t[digits..];
        let sep = if after.starts_with('→') {
            '→'.len_utf8()
        } else if after.starts_with('\t') {
            1
        } else {
            return None;
        };
        Some(line.len() - after.len() + sep)
    };
    let lines: Vec<&str> = s.trim_matches('\n').lines().collect();
    let all_numbered = !lines.is_empty()
        && lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .all(|l| numbered(l).is_some());
    let s = if all_numbered {
        lines
            .iter()
            .map(|l| numbered(l).map_or(*l, |n| &l[n..]))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        s
    };
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            first_path("Read the file /tmp/x/secret.txt and tell me what it says").as_deref(),
            Some("/tmp/x/secret.txt")
        );
        assert_eq!(
            first_path("Run cat on /a/b.txt.").as_deref(),
            Some("/a/b.txt")
        );
        assert_eq!(first_path("see https://claude.com/claude-code"), None);
        assert_eq!(
            first_path("path: `/etc/hosts`").as_deref(),
            Some("/etc/hosts")
        );
        assert_eq!(first_path("a / b // c"), None);
        assert_eq!(first_path("(/x/y)").as_deref(), Some("/x/y"));
    }

    #[test]
    fn tag_blocks_are_left_out_of_the_user_text() {
        let t = "<system-reminder>\nsee /not/this\n</system-reminder>\nRead /yes/this please";
        assert_eq!(
            first_path(&strip_tag_blocks(t, None)).as_deref(),
            Some("/yes/this")
        );
        let t = "<environment_context>\n  <cwd>/tmp/w</cwd>\n</environment_context>\ncat /tmp/w/f";
        assert_eq!(
            first_path(&strip_tag_blocks(t, None)).as_deref(),
            Some("/tmp/w/f")
        );
        assert_eq!(strip_tag_blocks("a < b <c> d", None), "a < b <c> d");
    }

    #[test]
    fn tool_results_are_cleaned() {
        assert_eq!(
            clean_tool_result("     1→hello\n     2→world\n"),
            "hello\nworld"
        );
        assert_eq!(clean_tool_result("1\thello 42\n"), "hello 42");
        assert_eq!(
            clean_tool_result("1→x\n\n<system-reminder>\nbe careful\n</system-reminder>\n"),
            "x"
        );
        assert_eq!(
            clean_tool_result(
                "Chunk ID: 1\nWall time: 0.0 seconds\nProcess exited with code 0\nOutput:\nhello 42\n"
            ),
            "hello 42"
        );
        assert_eq!(clean_tool_result("  plain text\n"), "plain text");
        assert_eq!(
            clean_tool_result("12 apples\nno number"),
            "12 apples\nno number"
        );
    }

    fn tool(name: &str, params: Value) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            params,
        }
    }

    #[test]
    fn the_agent_picks_an_offered_tool() {
        let conv = |tools| Conversation {
            user_text: vec!["read /p/f".into()],
            tool_result: None,
            tools,
        };
        let call = |name: &str, arguments: Value| Step::Call {
            name: name.into(),
            arguments,
        };
        assert_eq!(
            agent_step(&conv(vec![
                tool("Bash", Value::Null),
                tool("Read", Value::Null)
            ])),
            call("Read", json!({"file_path": "/p/f"}))
        );
        assert_eq!(
            agent_step(&conv(vec![
                tool("write_stdin", Value::Null),
                tool("exec_command", Value::Null)
            ])),
            call("exec_command", json!({"cmd": "cat /p/f"}))
        );
        assert_eq!(
            agent_step(&conv(vec![tool(
                "shell",
                json!({"properties": {"command": {"type": "array"}}})
            )])),
            call("shell", json!({"command": ["bash", "-lc", "cat /p/f"]}))
        );
        assert_eq!(
            agent_step(&conv(vec![tool(
                "run_shell",
                json!({"properties": {"cmd": {"type": "string"}}})
            )])),
            call("run_shell", json!({"cmd": "cat /p/f"}))
        );
        assert_eq!(
            agent_step(&conv(vec![tool("read_file", Value::Null)])),
            call("read_file", json!({"path": "/p/f"}))
        );
        assert!(matches!(agent_step(&conv(vec![])), Step::Say(_)));
    }
}
