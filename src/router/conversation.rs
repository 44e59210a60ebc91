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

/// The text of an OpenAI or Anthropic `content` value.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
