//! What the CLI executor adapters share: turning a conversation into one prompt for a
//! non-interactive agent CLI, reading the configured model list, and cleaning the CLI's output.
//! Plain Rust (no WIT) so each adapter converts its own generated types at the edge.

/// One turn, as the adapters pass it in.
pub struct Turn<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// The prompt for a one-shot CLI run. A single user turn is passed as it is; a longer
/// conversation is rendered as a transcript with role headers, ending with the latest turn.
/// Oldest turns are dropped first until the prompt fits `max_bytes` (the latest turn is always
/// kept, cut at the end if it alone is too long). A leading `-` is escaped with a space so the
/// CLI does not read the prompt as a flag.
pub fn render_prompt(turns: &[Turn<'_>], max_bytes: usize) -> String {
    let useful: Vec<&Turn<'_>> = turns
        .iter()
        .filter(|t| !t.content.trim().is_empty())
        .collect();
    let mut out = if useful.len() == 1 && useful[0].role == "user" {
        useful[0].content.to_string()
    } else {
        let mut parts: Vec<String> = useful
            .iter()
            .map(|t| format!("[{}]\n{}", t.role, t.content.trim_end()))
            .collect();
        let mut total: usize = parts.iter().map(|p| p.len() + 2).sum();
        while parts.len() > 1 && total > max_bytes {
            total -= parts[0].len() + 2;
            parts.remove(0);
        }
        parts.join("\n\n")
    };
    if out.len() > max_bytes {
        let mut cut = max_bytes;
        while cut > 0 && !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    if out.starts_with('-') {
        out.insert(0, ' ');
    }
    out
}

/// A configured model: the id clients use and the id passed to the CLI's `--model` (none: the
/// CLI's own default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMapping {
    pub id: String,
    pub cli_model: Option<String>,
}

/// Parses `id[=cli-model],…` (the `models` config key). Blank entries are skipped.
pub fn parse_models(spec: &str) -> Vec<ModelMapping> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((id, m)) => ModelMapping {
                id: id.trim().to_string(),
                cli_model: Some(m.trim().to_string()).filter(|m| !m.is_empty()),
            },
            None => ModelMapping {
                id: s.to_string(),
                cli_model: None,
            },
        })
        .collect()
}

/// Removes ANSI escape sequences (colours, cursor moves) and carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte in @..~
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

/// The last `max` bytes of a (lossily decoded) output, for error messages.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// A rough token count (about four bytes a token) for backends that report none.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_user_turn_is_passed_as_is() {
        let t = [Turn {
            role: "user",
            content: "hello",
        }];
        assert_eq!(render_prompt(&t, 100), "hello");
    }

    #[test]
    fn transcript_drops_oldest_first() {
        let t = [
            Turn {
                role: "system",
                content: "aaaaaaaaaaaaaaaaaaaa",
            },
            Turn {
                role: "user",
                content: "first question",
            },
            Turn {
                role: "assistant",
                content: "an answer",
            },
            Turn {
                role: "user",
                content: "latest",
            },
        ];
        let p = render_prompt(&t, 40);
        assert!(p.ends_with("[user]\nlatest"), "{p}");
        assert!(!p.contains("aaaa"), "{p}");
    }

    #[test]
    fn leading_dash_is_escaped() {
        let t = [Turn {
            role: "user",
            content: "--help me",
        }];
        assert_eq!(render_prompt(&t, 100), " --help me");
    }

    #[test]
    fn models_parse() {
        let m = parse_models("auggie, auggie-sonnet=sonnet4 ,");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].cli_model.as_deref(), Some("sonnet4"));
        assert_eq!(m[0].cli_model, None);
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m\r\n"), "ok\n");
    }
}
