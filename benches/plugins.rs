//! Plugin host latency: `cargo bench --bench plugins` (uses the committed `plugins/dist/*.wasm`).
//! Prints p50/p90 of:
//! - an extractor call on a reused instance (`code-features` on a short coding prompt, and the
//!   trivial `test-extractor`), through `PluginHost::extract` (target: p50 ≤ 50 µs);
//! - the same through `extract_features` (names prefixed, map built), from a plain thread and
//!   from inside a tokio runtime (where each call moves to the extractor thread pool);
//! - loading a plugin whose compiled form is in the disk cache: `PluginHost::new` with one
//!   extractor, engine and ticker included (target: ≤ 5 ms);
//! - loading it without a cache (compiling), for comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::pct;

use std::path::Path;
use std::time::{Duration, Instant};

use dualrouter_core::conversation::Conversation;
use dualrouter_plugins::{PluginConfig, PluginHost, PluginKind, PluginsConfig};
use dualrouter_testkit::freshness::dist_artifact;

fn report(name: &str, unit: &str, samples: Vec<f64>) {
    println!(
        "{name:<52} p50 {:>9.2} {unit}   p90 {:>9.2} {unit}   (n={})",
        pct(&samples, 0.5),
        pct(&samples, 0.9),
        samples.len()
    );
}

fn config(stem: &str, cache: Option<&Path>) -> PluginsConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    PluginsConfig {
        plugins: vec![PluginConfig::new(
            stem,
            dist_artifact(root, stem),
            PluginKind::FeatureExtractor,
        )],
        cache_dir: cache.map(Path::to_path_buf),
        ..PluginsConfig::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = tempfile::tempdir()?;
    let prompt = "Why does this fail?\n```rust\nfn main() {\n    let v: Vec<i32> = Vec::new();\n    println!(\"{}\", v[0]);\n}\n```\nPlease run the tests.";
    let conv = Conversation::from_prompt(prompt);

    for stem in ["code_features", "test_extractor"] {
        let host = PluginHost::new(&config(stem, Some(cache.path())))?;
        // Warm up: the first call instantiates.
        for _ in 0..200 {
            host.extract(stem, &conv)?;
        }
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            let f = host.extract(stem, &conv)?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(f);
        }
        report(&format!("extract ({stem}), reused instance"), "µs", samples);
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            let f = host.extract_features(&conv);
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(f);
        }
        report(&format!("extract_features ({stem})"), "µs", samples);
        // Called straight from async code: the call moves to the extractor pool (see host.rs).
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let samples = rt.block_on(async {
            let mut samples = Vec::with_capacity(2000);
            for _ in 0..2000 {
                let t = Instant::now();
                let f = host.extract_features(&conv);
                samples.push(t.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(f);
            }
            samples
        });
        report(
            &format!("extract_features ({stem}) from async code"),
            "µs",
            samples,
        );
    }

    // Loading from the cache (filled by the hosts above).
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let host = PluginHost::new(&config("code_features", Some(cache.path())))?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(host.statuses()[0].from_cache, "expected a cache hit");
        drop(host);
    }
    report("load code_features from the disk cache", "ms", samples);

    // The fixed part of that: engine, epoch ticker, linkers, with no plugin.
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let host = PluginHost::new(&PluginsConfig::default())?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        drop(host);
    }
    report(
        "  of which: a host with no plugin (engine, ticker)",
        "ms",
        samples,
    );

    // First call after a cached load: instantiate + call.
    let mut samples = Vec::new();
    for _ in 0..50 {
        let host = PluginHost::new(&config("code_features", Some(cache.path())))?;
        let t = Instant::now();
        host.extract("code_features", &conv)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report(
        "first extract after load (instantiate + call)",
        "µs",
        samples,
    );

    let mut samples = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let _host = PluginHost::new(&config("code_features", None))?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    report("load code_features, compiling (no cache)", "ms", samples);
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
