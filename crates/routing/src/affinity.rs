//! Session affinity: the model first chosen for a conversation, remembered so its next requests
//! stay there (the provider's prompt cache stays warm) while that model is a healthy candidate.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

use dualrouter_core::config::routing::AffinitySettings;
use dualrouter_core::conversation::Conversation;

pub struct Affinity {
    settings: AffinitySettings,
    sessions: Mutex<LruCache<[u8; 16], (String, Instant)>>,
}

impl Affinity {
    pub fn new(settings: AffinitySettings) -> Self {
        let cap = NonZeroUsize::new(settings.max_sessions.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            settings,
            sessions: Mutex::new(LruCache::new(cap)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The conversation's key: its `x-session-id`, else its first messages.
    pub fn key(&self, session_id: Option<&str>, conversation: &Conversation) -> Option<[u8; 16]> {
        if !self.settings.enabled {
            return None;
        }
        let mut h = Sha256::new();
        match session_id {
            Some(id) => {
                h.update(b"id\0");
                h.update(id.as_bytes());
            }
            None => {
                if conversation.turns.is_empty() {
                    return None;
                }
                // The system prompt and the first user messages: what every later request of
                // the conversation repeats.
                h.update(b"prefix\0");
                let mut users = 0;
                for t in &conversation.turns {
                    if t.role == "user" {
                        if users == self.settings.prefix_messages {
                            break;
                        }
                        users += 1;
                    } else if t.role != "system" && t.role != "developer" {
                        continue;
                    }
                    h.update(t.role.as_bytes());
                    h.update([0]);
                    h.update(t.text.as_bytes());
                    h.update([0xff]);
                }
            }
        }
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        Some(k)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 16], (String, Instant)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model remembered for `key`, if still fresh.
    pub fn get(&self, key: &[u8; 16]) -> Option<String> {
        let ttl = Duration::from_secs(self.settings.ttl_s);
        let mut s = self.lock();
        match s.get_mut(key) {
            Some((model, seen)) if seen.elapsed() < ttl => {
                *seen = Instant::now();
                Some(model.clone())
            }
            Some(_) => {
                s.pop(key);
                None
            }
            None => None,
        }
    }

    /// Remembers the model that served the conversation, unless one is remembered already.
    pub fn remember(&self, key: [u8; 16], model: &str) {
        let ttl = Duration::from_secs(self.settings.ttl_s);
        let mut s = self.lock();
        let fresh = s.peek(&key).is_some_and(|(_, seen)| seen.elapsed() < ttl);
        if !fresh {
            s.put(key, (model.to_string(), Instant::now()));
        }
    }

    /// Forgets every conversation (the routing model changed).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_model_and_keys_by_prefix() {
        let a = Affinity::new(AffinitySettings::default());
        let mut c = Conversation::from_prompt("hello");
        let k1 = a.key(None, &c).unwrap();
        a.remember(k1, "m1");
        a.remember(k1, "m2");
        assert_eq!(a.get(&k1).as_deref(), Some("m1"));
        for (role, text) in [("assistant", "hi"), ("user", "more")] {
            c.turns.push(dualrouter_core::conversation::Turn {
                role: role.into(),
                text: text.into(),
            });
        }
        assert_eq!(a.key(None, &c), Some(k1), "a later turn keeps the key");
        assert_ne!(a.key(None, &Conversation::from_prompt("other")), Some(k1));
        assert_ne!(a.key(Some("s1"), &c), a.key(Some("s2"), &c));
        assert!(Affinity::new(AffinitySettings {
            enabled: false,
            ..AffinitySettings::default()
        })
        .key(None, &c)
        .is_none());
    }
}
