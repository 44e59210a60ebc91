//! Test guest: a feature extractor built against `dualrouter:plugin@9.0.0`, a WIT version the
//! host does not speak. The host must refuse it at load.

wit_bindgen::generate!({ world: "feature-extractor", path: "wit" });

use dualrouter::plugin::types::{Conversation, Feature};
use exports::dualrouter::plugin::extractor_api::Guest;

struct WrongVersion;

impl Guest for WrongVersion {
    fn extract(_conversation: Conversation) -> Vec<Feature> {
        vec![Feature {
            name: "never".into(),
            value: 1.0,
        }]
    }
}

export!(WrongVersion);
