//! A token estimate for when no tokenizer of the model's is at hand.
//!
//! Used for Anthropic's `message_start` before an OpenAI-format upstream has reported usage,
//! for `POST /v1/messages/count_tokens` when the routed model is not served by Anthropic, and
//! by routing's cost estimate. The rule (documented in docs/translation.md): one token per 4
//! bytes of UTF-8 text (rounded up) in instructions, messages, tool calls, tool results and
//! tool definitions (their JSON), plus 4 per message or item, plus 1,600 per image or file
//! (about what a 1,000×1,000 image costs on either provider). For English prose and code the
//! providers' own counts fall within about ±25% of this.

use crate::ir::{Item, Part, Request, Tool};

/// Tokens charged per message or item for its framing.
const PER_ITEM: u64 = 4;
/// Tokens an image or file is counted as.
const PER_IMAGE: u64 = 1600;

/// One token per 4 bytes, rounded up.
pub(crate) fn of_text(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn of_parts(parts: &[Part]) -> u64 {
    parts
        .iter()
        .map(|p| match p {
            Part::Text { text, .. } => of_text(text),
            Part::Image { .. } | Part::File { .. } => PER_IMAGE,
        })
        .sum()
}

/// The estimated prompt size of a request.
pub fn estimate(req: &Request) -> u64 {
    let mut n = of_parts(&req.system);
    for item in &req.items {
        n += PER_ITEM
            + match item {
                Item::Message { content, .. } => of_parts(content),
                Item::ToolCall {
                    name, arguments, ..
                } => of_text(name) + of_text(arguments),
                Item::ToolResult { content, .. } => of_parts(content),
                Item::Reasoning { text, .. } => of_text(text),
            };
    }
    for t in &req.tools {
        n += match t {
            Tool::Function {
                name,
                description,
                parameters,
                ..
            } => {
                of_text(name)
                    + description.as_deref().map_or(0, of_text)
                    + of_text(&parameters.to_string())
            }
            Tool::Custom {
                name, description, ..
            } => of_text(name) + description.as_deref().map_or(0, of_text),
            Tool::Hosted { spec, .. } => of_text(&spec.to_string()),
        };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_items_and_images() {
        assert_eq!(of_text(""), 0);
        assert_eq!(of_text("abcd"), 1);
        assert_eq!(of_text("abcde"), 2);
        let req = Request {
            system: vec![Part::text("12345678")],
            items: vec![Item::Message {
                role: crate::ir::Role::User,
                content: vec![
                    Part::text("abcd"),
                    Part::Image {
                        source: crate::ir::Source::Url("http://x".into()),
                        detail: None,
                        cache_control: None,
                    },
                ],
            }],
            ..Default::default()
        };
        assert_eq!(estimate(&req), 2 + PER_ITEM + 1 + PER_IMAGE);
    }
}
