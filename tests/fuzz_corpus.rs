//! Replays every committed fuzz corpus (`fuzz/corpus/TARGET/*`) through the same library entry
//! points the cargo-fuzz targets call (`dualrouter_testkit::fuzzing`), so a crash once found stays
//! fixed without a nightly toolchain. A missing or empty corpus directory is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in dualrouter_testkit::fuzzing::TARGETS {
        let src = std::fs::read_to_string(root.join("fuzz_targets").join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            src.contains(&format!("dualrouter_testkit::fuzzing::{name}(")),
            "fuzz target {name} does not call dualrouter_testkit::fuzzing::{name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

#[test]
fn corpora_replay_without_panics() {
    // Every failure is collected (each also prints its panic) and all are reported at the end.
    let mut failures = Vec::new();
    let mut total = 0usize;
    for (name, entry) in dualrouter_testkit::fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect(),
            Err(e) => {
                failures.push(format!("{}: corpus directory missing ({e})", dir.display()));
                continue;
            }
        };
        if files.is_empty() {
            failures.push(format!("{}: corpus directory is empty", dir.display()));
            continue;
        }
        for file in files {
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                // A fuzzer running on this corpus replaced the file (it reduces inputs).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            total += 1;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| entry(&data))) {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {} panicked: {msg}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= dualrouter_testkit::fuzzing::TARGETS.len());
}
