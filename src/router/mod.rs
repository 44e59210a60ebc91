//! Routing: classify the conversation, then (in later stages) choose among the candidates.

pub mod classify;
pub mod conversation;
