//! Reasoning tokens across providers.
//!
//! Anthropic signs each thinking block (`signature`, or the `data` of a `redacted_thinking`
//! block) and OpenAI encrypts reasoning items (`encrypted_content`); each accepts only its own
//! tokens back, and the client stores them opaquely and returns them with the conversation.
//! When a client of one format is served by a provider of the other, the provider's token goes
//! into the client's field with a short prefix naming its origin, so that a later turn can
//! return it to that provider, and never send it to the other one:
//!
//! | token | in an Anthropic client's `signature` | in a Responses client's `encrypted_content` |
//! |---|---|---|
//! | Anthropic signature | as issued | `dr1:as:` + signature |
//! | Anthropic redacted thinking | (a `redacted_thinking` block, as issued) | `dr1:ar:` + data |
//! | OpenAI encrypted content | `dr1:oe:` + content | as issued |

use crate::ir::{Origin, Sealed};

const ANTHROPIC_SIGNATURE: &str = "dr1:as:";
const ANTHROPIC_REDACTED: &str = "dr1:ar:";
const OPENAI_ENCRYPTED: &str = "dr1:oe:";
/// The signature of reasoning that came without one (e.g. a chat upstream's
/// `reasoning_content`): no provider takes it back.
pub(crate) const UNSIGNED: &str = "dr1:none";

/// The token for an Anthropic client's thinking `signature` (reasoning without one gets
/// [`UNSIGNED`]).
pub(crate) fn to_anthropic(s: Option<&Sealed>) -> String {
    match s {
        None => UNSIGNED.to_string(),
        Some(s) => match s.origin {
            Origin::Anthropic => s.value.clone(),
            Origin::OpenAi => format!("{OPENAI_ENCRYPTED}{}", s.value),
        },
    }
}

/// A thinking `signature` from an Anthropic client (`None`: there is no token to return).
pub(crate) fn from_anthropic(token: &str) -> Option<Sealed> {
    if token.is_empty() || token == UNSIGNED {
        return None;
    }
    Some(match token.strip_prefix(OPENAI_ENCRYPTED) {
        Some(v) => Sealed {
            origin: Origin::OpenAi,
            value: v.to_string(),
        },
        None => Sealed {
            origin: Origin::Anthropic,
            value: token.to_string(),
        },
    })
}

/// The token for a Responses client's `encrypted_content` (`redacted`: an Anthropic
/// `redacted_thinking` block's data).
pub(crate) fn to_openai(s: &Sealed, redacted: bool) -> String {
    match s.origin {
        Origin::OpenAi => s.value.clone(),
        Origin::Anthropic if redacted => format!("{ANTHROPIC_REDACTED}{}", s.value),
        Origin::Anthropic => format!("{ANTHROPIC_SIGNATURE}{}", s.value),
    }
}

/// An `encrypted_content` from a Responses client; `true` when it is redacted thinking.
pub(crate) fn from_openai(token: &str) -> (Sealed, bool) {
    if let Some(v) = token.strip_prefix(ANTHROPIC_SIGNATURE) {
        return (
            Sealed {
                origin: Origin::Anthropic,
                value: v.to_string(),
            },
            false,
        );
    }
    if let Some(v) = token.strip_prefix(ANTHROPIC_REDACTED) {
        return (
            Sealed {
                origin: Origin::Anthropic,
                value: v.to_string(),
            },
            true,
        );
    }
    (
        Sealed {
            origin: Origin::OpenAi,
            value: token.to_string(),
        },
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_the_other_format() {
        let a = Sealed {
            origin: Origin::Anthropic,
            value: "EqQBCkYI".into(),
        };
        let o = Sealed {
            origin: Origin::OpenAi,
            value: "gAAAAAB".into(),
        };
        assert_eq!(from_openai(&to_openai(&a, false)), (a.clone(), false));
        assert_eq!(from_openai(&to_openai(&a, true)), (a.clone(), true));
        assert_eq!(from_openai(&to_openai(&o, false)).0, o);
        assert_eq!(from_anthropic(&to_anthropic(Some(&o))), Some(o));
        assert_eq!(from_anthropic(&to_anthropic(Some(&a))), Some(a.clone()));
        assert_eq!(to_anthropic(Some(&a)), "EqQBCkYI");
        assert_eq!(from_anthropic(&to_anthropic(None)), None);
    }
}
