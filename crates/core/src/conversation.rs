//! The conversation as the router sees it: roles and plain text, whatever the wire format.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// From OpenAI `messages`: `content` as a string, or an array of parts whose `text` parts
    /// are joined (images and other parts carry no text for routing).
    pub fn from_openai_messages(messages: &[Value]) -> Self {
        let turns = messages
            .iter()
            .map(|m| Turn {
                role: m
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_string(),
                text: content_text(m.get("content")),
            })
            .collect();
        Self { turns }
    }

    /// From a Responses request: `instructions` as a system turn, then each message item of
    /// `input` (a string `input` is one user turn). Tool calls and their results carry no
    /// intent to route on.
    pub fn from_responses(body: &serde_json::Map<String, Value>) -> Self {
        let mut turns = Vec::new();
        if let Some(i) = body.get("instructions").and_then(Value::as_str) {
            turns.push(Turn {
                role: "system".into(),
                text: i.to_string(),
            });
        }
        match body.get("input") {
            Some(Value::String(s)) => turns.push(Turn {
                role: "user".into(),
                text: s.clone(),
            }),
            Some(Value::Array(items)) => {
                for it in items {
                    let is_message = it
                        .get("type")
                        .and_then(Value::as_str)
                        .map_or(it.get("role").is_some(), |t| t == "message");
                    if !is_message {
                        continue;
                    }
                    turns.push(Turn {
                        role: it
                            .get("role")
                            .and_then(Value::as_str)
                            .unwrap_or("user")
                            .to_string(),
                        text: content_text(it.get("content")),
                    });
                }
            }
            _ => {}
        }
        Self { turns }
    }

    /// From a bare prompt: one user turn.
    pub fn from_prompt(prompt: &str) -> Self {
        Self {
            turns: vec![Turn {
                role: "user".into(),
                text: prompt.to_string(),
            }],
        }
    }

    /// The latest user turn's text (what the user wants now).
    pub fn latest_user(&self) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == "user" && !t.text.trim().is_empty())
            .map(|t| t.text.as_str())
    }
}

/// The text of an OpenAI, Responses or Anthropic `content` value. Parts that are whole
/// tagged envelopes (`<system-reminder>…</system-reminder>`, `<environment_context>…`), which
/// coding agents add to the user's turn as context, are left out when the turn has other
/// text: routing reads what the user asked.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    _ => p.get("text").and_then(Value::as_str),
                })
                .collect();
            let asked: Vec<&str> = texts.iter().copied().filter(|t| !is_envelope(t)).collect();
            if asked.is_empty() {
                texts.join("\n")
            } else {
                asked.join("\n")
            }
        }
        _ => String::new(),
    }
}

/// Whether a text is one tagged envelope: `<tag …>` … `</tag>` and nothing around it.
pub fn is_envelope(text: &str) -> bool {
    let t = text.trim();
    let Some(rest) = t.strip_prefix('<') else {
        return false;
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    !name.is_empty() && t.ends_with(&format!("</{name}>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_context_envelopes_are_not_what_the_user_asked() {
        let msgs = vec![json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nlots of context\n</system-reminder>"},
            {"type": "text", "text": "fix the failing test"}
        ]})];
        let c = Conversation::from_openai_messages(&msgs);
        assert_eq!(c.latest_user(), Some("fix the failing test"));
        // A turn of envelopes only keeps them (there is nothing else to read).
        let msgs = vec![json!({"role": "user", "content": [{"type": "text", "text": "<a>x</a>"}]})];
        assert_eq!(
            Conversation::from_openai_messages(&msgs).latest_user(),
            Some("<a>x</a>")
        );
        assert!(!is_envelope("<a>x</b>"));
        assert!(!is_envelope("a <b>x</b>"));
        let body = json!({"instructions": "be brief", "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
            {"type": "function_call_output", "call_id": "c", "output": "x"}
        ]});
        let c = Conversation::from_responses(body.as_object().unwrap());
        assert_eq!(c.turns.len(), 3);
        assert_eq!(c.latest_user(), Some("say hi"));
    }

    #[test]
    fn text_from_parts() {
        let msgs = vec![
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]}),
        ];
        let c = Conversation::from_openai_messages(&msgs);
        assert_eq!(c.turns[1].text, "a\nb");
        assert_eq!(c.latest_user(), Some("a\nb"));
    }
}
