//! dualrouter's learning: the prompt encoder ([`encoder`]: text → a unit-length embedding,
//! shared by the router's classifier and MIRT), MIRT ([`mirt`]: P(success) = σ(a·θ − b),
//! checkpoints, fitting on outcome data), and routing-quality metrics with the cost-quality
//! plot ([`eval`]). No network, no database: the store and the trainer job live above.

pub mod encoder;
pub mod eval;
pub mod mirt;
