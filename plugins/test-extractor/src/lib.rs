//! Test guest (not for production): a feature extractor whose behaviour is chosen by the latest
//! turn's text. Used by `tests/plugins.rs` and `benches/plugins.rs`.
//!
//! | latest turn | extract does |
//! |---|---|
//! | `loop` | loops forever |
//! | `alloc` | allocates without end |
//! | `trap` | panics, which traps |
//! | `huge` | returns 10000 features |
//! | `nan` | returns a NaN value |
//! | `bad-name` | returns a feature named `Bad Name!` |
//! | anything else | `chars` (characters of the latest turn) and `turns` |

wit_bindgen::generate!({ world: "feature-extractor", path: "../../wit/v0.1.0" });

use dualrouter::plugin::types::{Conversation, Feature};
use exports::dualrouter::plugin::extractor_api::Guest;

struct TestExtractor;

impl Guest for TestExtractor {
    fn extract(conversation: Conversation) -> Vec<Feature> {
        let last = conversation
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        match last {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("deliberate trap for the host's tests"),
            "huge" => (0..10_000)
                .map(|i| Feature {
                    name: format!("f{i}"),
                    value: 1.0,
                })
                .collect(),
            "nan" => vec![Feature {
                name: "chars".into(),
                value: f32::NAN,
            }],
            "bad-name" => vec![Feature {
                name: "Bad Name!".into(),
                value: 1.0,
            }],
            _ => vec![
                Feature {
                    name: "chars".into(),
                    value: last.chars().count() as f32,
                },
                Feature {
                    name: "turns".into(),
                    value: conversation.messages.len() as f32,
                },
            ],
        }
    }
}

export!(TestExtractor);
