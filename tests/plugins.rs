//! The WASM plugin platform end to end: real components from `plugins/dist/` (built by
//! `scripts/build-plugins.sh`, checked current here), the misbehaving test guests, the CLI
//! executors against stand-in `auggie` / `cursor-agent` scripts on PATH, the HTTP executor
//! against a local mock, WIT-version refusal, the compiled cache and `plugin inspect`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use dualrouter_core::config::Secret;
use dualrouter_core::conversation::{Conversation, Turn};
use dualrouter_plugins::{
    ExecutorErrorKind, HealthStatus, InvokeRequest, PluginConfig, PluginError, PluginHost,
    PluginKind, PluginsConfig,
};
use dualrouter_testkit::freshness;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dist(stem: &str) -> PathBuf {
    freshness::dist_artifact(root(), stem)
}

/// One compiled-artifact cache for every test of this run (and the next runs).
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

fn host(plugins: Vec<PluginConfig>, cooldown: Duration) -> PluginHost {
    try_host(plugins, cooldown).unwrap()
}

fn try_host(plugins: Vec<PluginConfig>, cooldown: Duration) -> Result<PluginHost, PluginError> {
    PluginHost::new(&PluginsConfig {
        plugins,
        cache_dir: Some(cache_dir()),
        epoch_tick: Duration::from_millis(5),
        unhealthy_cooldown: cooldown,
        health_interval: None,
        extract_threads: 2,
    })
}

/// An extractor with a generous deadline: debug builds on a busy machine are slow, and the
/// deadline tests set their own. (The 100 ms default is checked in the config test.)
fn extractor(name: &str, stem: &str) -> PluginConfig {
    let mut c = PluginConfig::new(name, dist(stem), PluginKind::FeatureExtractor);
    c.timeout = Duration::from_secs(2);
    c
}

fn executor(name: &str, stem: &str) -> PluginConfig {
    let mut c = PluginConfig::new(name, dist(stem), PluginKind::Executor);
    c.timeout = Duration::from_secs(10);
    c
}

fn conv(turns: &[(&str, &str)]) -> Conversation {
    Conversation {
        turns: turns
            .iter()
            .map(|(r, t)| Turn {
                role: r.to_string(),
                text: t.to_string(),
            })
            .collect(),
    }
}

fn request(model: &str, prompt: &str) -> InvokeRequest {
    InvokeRequest {
        model: model.into(),
        messages: vec![Turn {
            role: "user".into(),
            text: prompt.into(),
        }],
        max_tokens: Some(64),
        temperature: None,
    }
}

// ---- artifacts -------------------------------------------------------------------------------

#[test]
fn committed_artifacts_are_current_with_their_sources() {
    let problems = freshness::check(root());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let manifest = freshness::read_manifest(root()).unwrap();
    for stem in [
        "auggie",
        "cursor_agent",
        "http_executor",
        "code_features",
        "test_executor",
        "test_extractor",
        "test_wrong_version",
    ] {
        let file = format!("{stem}.wasm");
        assert!(
            manifest.artifacts.iter().any(|(_, f)| *f == file),
            "{file} missing from the manifest"
        );
    }
}

#[test]
fn freshness_check_notices_a_changed_source_and_a_changed_artifact() {
    // A copy of the relevant tree, so the real one is never touched.
    let tmp = tempfile::tempdir().unwrap();
    let copy = |rel: &str| {
        let status = std::process::Command::new("cp")
            .args(["-r", &root().join(rel).display().to_string()])
            .arg(tmp.path().join(rel))
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::fs::create_dir_all(tmp.path().join("plugins")).unwrap();
    copy("wit");
    for entry in std::fs::read_dir(root().join("plugins")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "target" {
            copy(&format!("plugins/{name}"));
        }
    }
    assert!(freshness::check(tmp.path()).is_empty());
    std::fs::write(
        tmp.path().join("plugins/code-features/src/extra.rs"),
        "// new\n",
    )
    .unwrap();
    let problems = freshness::check(tmp.path()).join("\n");
    assert!(problems.contains("plugin sources changed"), "{problems}");
    std::fs::remove_file(tmp.path().join("plugins/code-features/src/extra.rs")).unwrap();
    std::fs::write(
        tmp.path().join("plugins/dist/auggie.wasm"),
        b"not the build",
    )
    .unwrap();
    let problems = freshness::check(tmp.path()).join("\n");
    assert!(
        problems.contains("auggie.wasm does not match"),
        "{problems}"
    );
    assert!(!problems.contains("plugin sources changed"), "{problems}");
}

// ---- feature extractors ----------------------------------------------------------------------

#[test]
fn code_features_describe_a_coding_conversation() {
    let h = host(
        vec![extractor("code-features", "code_features")],
        Duration::from_secs(30),
    );
    let c = conv(&[
        ("system", "You are a helpful assistant."),
        (
            "user",
            "Why does this not compile?\n```rust\nfn main() {\n    let x: i32 = \"a\";\n}\n```",
        ),
        ("assistant", "The types differ."),
        (
            "user",
            "Fix it and run the tests, then show me a SQL query: SELECT id FROM users WHERE x = 1",
        ),
    ]);
    let f = h.extract_features(&c);
    assert_eq!(f["code-features.has_code"], 1.0, "{f:?}");
    assert_eq!(f["code-features.code_lines"], 3.0, "{f:?}");
    assert_eq!(f["code-features.lang_rust"], 1.0, "{f:?}");
    assert_eq!(f["code-features.asks_for_tool_use"], 1.0, "{f:?}");
    assert_eq!(f["code-features.conversation_depth"], 2.0, "{f:?}");
    assert!(f["code-features.languages"] >= 1.0, "{f:?}");

    let plain = h.extract_features(&conv(&[("user", "Write a haiku about autumn leaves.")]));
    assert_eq!(plain["code-features.has_code"], 0.0, "{plain:?}");
    assert_eq!(plain["code-features.code_lines"], 0.0);
    assert_eq!(plain["code-features.asks_for_tool_use"], 0.0);
    assert_eq!(plain["code-features.languages"], 0.0);
    assert!(!plain.contains_key("code-features.lang_rust"));
}

/// Each way an extractor can misbehave: stopped, named, counted, marked unhealthy; the other
/// extractor's features still arrive, and (cooldown 0) the bad one serves the next good call.
#[test]
fn misbehaving_extractor_is_stopped_and_the_rest_carries_on() {
    let mut bad = extractor("bad", "test_extractor");
    bad.memory_bytes = 32 << 20;
    // Generous: on a loaded machine a debug-build instantiation alone can take a while.
    bad.timeout = Duration::from_millis(2000);
    let h = host(
        vec![bad, extractor("code-features", "code_features")],
        Duration::ZERO,
    );
    let cases: [(&str, &str, &str); 6] = [
        ("loop", "timeout", "ran past its 2000 ms deadline"),
        ("alloc", "out_of_memory", "exceeded its 32 MiB memory limit"),
        ("trap", "trap", "deliberate trap"),
        ("huge", "garbage", "more than max_features 256"),
        ("nan", "garbage", "is NaN"),
        ("bad-name", "garbage", "Bad Name!"),
    ];
    for (input, kind, message) in cases {
        let t = Instant::now();
        let err = h.extract("bad", &conv(&[("user", input)])).unwrap_err();
        assert_eq!(err.kind(), kind, "{input}: {err}");
        let text = err.to_string();
        assert!(text.contains("plugin 'bad'"), "{text}");
        assert!(text.contains(message), "{input}: {text}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{input} took {:?}",
            t.elapsed()
        );
        assert!(h.metrics().error_count("bad", kind) > 0);

        // The whole-pipeline call: the bad plugin adds nothing, the good one still answers.
        let f = h.extract_features(&conv(&[("user", input)]));
        assert!(!f.keys().any(|k| k.starts_with("bad.")), "{input}: {f:?}");
        assert!(f.contains_key("code-features.has_code"), "{input}: {f:?}");

        // Cooldown 0: the next ordinary call runs on a fresh instance and succeeds.
        let ok = h.extract("bad", &conv(&[("user", "hello")])).unwrap();
        assert_eq!(
            ok,
            vec![("chars".to_string(), 5.0), ("turns".to_string(), 1.0)]
        );
        assert!(h.is_plugin_healthy("bad"));
    }
}

#[test]
fn unhealthy_extractor_is_skipped_for_its_cooldown() {
    let h = host(
        vec![
            extractor("bad", "test_extractor"),
            extractor("code-features", "code_features"),
        ],
        Duration::from_secs(60),
    );
    let err = h.extract("bad", &conv(&[("user", "trap")])).unwrap_err();
    assert_eq!(err.kind(), "trap");
    assert!(!h.is_plugin_healthy("bad"));
    let status = h.statuses().into_iter().find(|s| s.name == "bad").unwrap();
    assert!(!status.healthy);
    assert_eq!(status.consecutive_failures, 1);
    assert!(status.last_error.unwrap().contains("deliberate trap"));
    // Not run again until the cooldown ends, even for a good input.
    let err = h.extract("bad", &conv(&[("user", "hello")])).unwrap_err();
    assert!(matches!(err, PluginError::Unhealthy { .. }), "{err}");
    assert!(err.to_string().contains("next try in"), "{err}");
    let f = h.extract_features(&conv(&[("user", "hello")]));
    assert!(
        f.contains_key("code-features.has_code") && !f.contains_key("bad.chars"),
        "{f:?}"
    );
    let healthy = h.metrics().healthy.with_label_values(&["bad"]).get();
    assert_eq!(healthy, 0.0);
    assert!(h.is_plugin_healthy("code-features"));
}

#[test]
fn extractors_refuse_wrong_version_and_wrong_kind_at_load() {
    let err = try_host(vec![extractor("old", "test_wrong_version")], Duration::ZERO).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, PluginError::UnsupportedVersion { .. }),
        "{text}"
    );
    assert!(text.contains("plugin 'old'"), "{text}");
    assert!(text.contains("dualrouter:plugin@9.0.0"), "{text}");
    assert!(
        text.contains("this host speaks dualrouter:plugin@0.1.0"),
        "{text}"
    );

    let mut as_executor = executor("cf", "code_features");
    as_executor.kind = PluginKind::Executor;
    let err = try_host(vec![as_executor], Duration::ZERO).unwrap_err();
    assert!(matches!(err, PluginError::WrongKind { .. }), "{err}");

    let mut missing = extractor("gone", "code_features");
    missing.path = root().join("plugins/dist/no-such.wasm");
    let err = try_host(vec![missing], Duration::ZERO).unwrap_err();
    assert!(matches!(err, PluginError::Read { .. }), "{err}");

    let mut not_wasm = extractor("text", "code_features");
    not_wasm.path = root().join("plugins/dist/MANIFEST");
    let err = try_host(vec![not_wasm], Duration::ZERO).unwrap_err();
    assert!(matches!(err, PluginError::Invalid { .. }), "{err}");
}

#[test]
fn compiled_plugins_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |cache: &Path| PluginsConfig {
        plugins: vec![extractor("code-features", "code_features")],
        cache_dir: Some(cache.to_path_buf()),
        ..PluginsConfig::default()
    };
    let first = PluginHost::new(&cfg(dir.path())).unwrap();
    assert!(!first.statuses()[0].from_cache);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let second = PluginHost::new(&cfg(dir.path())).unwrap();
    assert!(second.statuses()[0].from_cache);
    let f = second.extract_features(&conv(&[("user", "```py\nprint(1)\n```")]));
    assert_eq!(f["code-features.lang_python"], 1.0);
    // A corrupt cache entry is recompiled, not trusted.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"garbage").unwrap();
    let third = PluginHost::new(&cfg(dir.path())).unwrap();
    assert!(!third.statuses()[0].from_cache);
    assert!(third
        .extract_features(&conv(&[("user", "hi")]))
        .contains_key("code-features.has_code"));
}

// ---- executors -------------------------------------------------------------------------------

/// The misbehaving test executor; its model ids are `<name>-<behaviour>`.
fn test_executor(name: &str) -> PluginConfig {
    let mut c = executor(name, "test_executor");
    c.config.insert("prefix".into(), format!("{name}-"));
    c.timeout = Duration::from_millis(2000);
    c.memory_bytes = 32 << 20;
    c.allow_commands = vec!["yes".into(), "sleep".into()];
    c.max_command_output_bytes = 1 << 20;
    c
}

#[test]
fn executor_describes_and_answers() {
    let h = host(vec![test_executor("t")], Duration::from_secs(30));
    let models = h.executor_models();
    assert_eq!(models.len(), 10);
    let echo = models.iter().find(|m| m.id == "t-test-echo").unwrap();
    assert_eq!(echo.plugin, "t");
    assert_eq!(echo.executor_kind, "test");
    assert_eq!(echo.input_cost_per_mtok, 1.0);
    assert_eq!(echo.context_tokens, 8192);
    assert!(echo.healthy);
    assert_eq!(h.plugin_for_model("t-test-echo"), Some("t"));
    let r = h
        .invoke_blocking("t", &request("t-test-echo", "hello there"))
        .unwrap();
    assert_eq!(r.text, "echo: hello there");
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.estimated
        ),
        (3, 5, false)
    );
    let health = h.check_health("t").unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
}

/// Every misbehaving executor call yields an error the caller can fall back on; the failing
/// instance is stopped, the plugin named and (for its own faults) marked unhealthy, and a
/// second plugin keeps answering meanwhile.
#[test]
fn misbehaving_executor_is_stopped_and_others_keep_answering() {
    let marker = tempfile::tempdir().unwrap().keep().join("forbidden-ran");
    let mut bad = test_executor("bad");
    bad.config
        .insert("marker".into(), marker.display().to_string());
    let h = Arc::new(host(vec![bad, test_executor("good")], Duration::ZERO));

    // A loop on one plugin does not hold up another.
    let h2 = h.clone();
    let looping = std::thread::spawn(move || {
        let t = Instant::now();
        let r = h2.invoke_blocking("bad", &request("bad-test-loop", "x"));
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let echo = h
        .invoke_blocking("good", &request("good-test-echo", "meanwhile"))
        .unwrap();
    assert_eq!(echo.text, "echo: meanwhile");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let (r, took) = looping.join().unwrap();
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Timeout {
                timeout_ms: 2000,
                ..
            }
        ),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    let own_faults: [(&str, &str, &str); 3] = [
        ("test-alloc", "out_of_memory", "32 MiB"),
        ("test-trap", "trap", "deliberate trap"),
        ("test-huge", "garbage", "more than max_response_bytes"),
    ];
    for (model, kind, message) in own_faults {
        let err = h
            .invoke_blocking("bad", &request(&format!("bad-{model}"), "x"))
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{model}: {err}");
        assert!(err.marks_unhealthy());
        assert!(
            err.to_string().contains("plugin 'bad'") && err.to_string().contains(message),
            "{err}"
        );
        assert!(h.metrics().error_count("bad", kind) > 0);
        // Still serving the next call (cooldown 0), and the other plugin never noticed.
        assert_eq!(
            h.invoke_blocking("bad", &request("bad-test-echo", "a"))
                .unwrap()
                .text,
            "echo: a"
        );
        assert_eq!(
            h.invoke_blocking("good", &request("good-test-echo", "b"))
                .unwrap()
                .text,
            "echo: b"
        );
    }

    // Capability refusals and limits: the plugin reports an error, it did not misbehave.
    let refused: [(&str, &str); 4] = [
        (
            "test-forbidden",
            "not-allowed: 'touch' is not in allow_commands of plugin 'bad'",
        ),
        ("test-flood", "output-too-large: 1048576"),
        ("test-slow-command", "timed-out: 200"),
        (
            "test-http-denied",
            "not-allowed: example.invalid:80 is not in allow_hosts",
        ),
    ];
    for (model, message) in refused {
        let t = Instant::now();
        let err = h
            .invoke_blocking("bad", &request(&format!("bad-{model}"), "x"))
            .unwrap_err();
        let PluginError::Executor {
            kind, message: m, ..
        } = &err
        else {
            panic!("{model}: {err}");
        };
        assert_eq!(*kind, ExecutorErrorKind::Failed);
        assert!(m.contains(message), "{model}: {m}");
        assert!(!err.marks_unhealthy());
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{model} took {:?}",
            t.elapsed()
        );
    }
    assert!(!marker.exists(), "the forbidden command ran");
    let err = h
        .invoke_blocking("bad", &request("bad-test-error", "x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    let err = h
        .invoke_blocking("bad", &request("good-test-echo", "x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::UnknownModel,
                ..
            }
        ),
        "{err}"
    );
    assert!(h.is_plugin_healthy("bad"));
}

#[test]
fn executor_in_cooldown_answers_unhealthy_and_its_models_are_marked() {
    let h = host(
        vec![test_executor("bad"), test_executor("good")],
        Duration::from_secs(60),
    );
    let err = h
        .invoke_blocking("bad", &request("bad-test-trap", "x"))
        .unwrap_err();
    assert_eq!(err.kind(), "trap");
    let err = h
        .invoke_blocking("bad", &request("bad-test-echo", "x"))
        .unwrap_err();
    assert!(matches!(err, PluginError::Unhealthy { .. }), "{err}");
    for m in h.executor_models() {
        assert_eq!(m.healthy, m.plugin == "good", "{m:?}");
    }
    assert_eq!(
        h.invoke_blocking("good", &request("good-test-echo", "y"))
            .unwrap()
            .text,
        "echo: y"
    );
}

#[test]
fn two_plugins_may_not_declare_the_same_model() {
    let err = try_host(
        vec![
            executor("a", "test_executor"),
            executor("b", "test_executor"),
        ],
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("model 'test-echo' is already served by plugin 'a'"),
        "{err}"
    );
}

#[test]
fn reported_unhealthy_backend_takes_models_out() {
    let mut c = test_executor("t");
    c.config.insert("health".into(), "unhealthy".into());
    let h = host(vec![c], Duration::ZERO);
    assert!(h.executor_models().iter().all(|m| m.healthy));
    let report = h.check_health("t").unwrap();
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(report.detail, "configured unhealthy");
    assert!(h.executor_models().iter().all(|m| !m.healthy));
    assert!(!h.is_plugin_healthy("t"));
}

#[test]
fn periodic_health_checks_keep_reports_current() {
    let mut c = test_executor("t");
    c.config.insert("health".into(), "unhealthy".into());
    let h = Arc::new(host(vec![c], Duration::ZERO));
    let checker = PluginHost::start_health_checks(&h, Duration::from_millis(50)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.statuses()[0].reported.is_none() {
        assert!(Instant::now() < deadline, "no health report within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        h.statuses()[0].reported.as_ref().unwrap().status,
        HealthStatus::Unhealthy
    );
    assert!(h.executor_models().iter().all(|m| !m.healthy));
    // The checker holds no strong reference: dropping the host ends it.
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !checker.is_finished() {
        assert!(
            Instant::now() < deadline,
            "health checker outlived its host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn async_invoke_runs_on_the_blocking_pool() {
    let h = Arc::new(host(vec![test_executor("t")], Duration::ZERO));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(h.invoke("t", request("t-test-echo", "async")))
        .unwrap();
    assert_eq!(r.text, "echo: async");
}

// ---- CLI executors with stand-in scripts on PATH ---------------------------------------------

/// A temp dir with stand-in `auggie` and `cursor-agent` scripts, put first on PATH once for the
/// whole test process (the rest of PATH is kept, so other tests' commands still resolve).
fn stand_ins() -> &'static Path {
    static ONCE: Once = Once::new();
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    ONCE.call_once(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let auggie = r#"#!/bin/sh
# Stand-in for Augment's auggie CLI: records its arguments, answers like --print --quiet.
if [ "$1" = "--version" ]; then echo "auggie 0.0.0-stand-in"; exit 0; fi
dir=$(dirname "$0")
: > "$dir/auggie.args"
for a in "$@"; do printf '%s\n' "$a" >> "$dir/auggie.args"; done
for last in "$@"; do :; done
case "$last" in
  *"please fail"*) echo "You are not currently logged in. Run auggie login." >&2; exit 1 ;;
esac
printf '\033[32mThe answer is 42.\033[0m\r\n'
"#;
        let cursor = r#"#!/bin/sh
# Stand-in for Cursor's cursor-agent CLI in -p --output-format json mode.
if [ "$1" = "--version" ]; then echo "2025.09.18-stand-in"; exit 0; fi
dir=$(dirname "$0")
: > "$dir/cursor-agent.args"
for a in "$@"; do printf '%s\n' "$a" >> "$dir/cursor-agent.args"; done
for last in "$@"; do :; done
case "$last" in
  *"please fail"*) echo '{"type":"result","subtype":"error","is_error":true,"result":"model quota exceeded"}'; exit 0 ;;
  *"garbled"*) echo 'this is not json'; exit 0 ;;
esac
echo '{"type":"system","subtype":"init"}'
echo '{"type":"result","subtype":"success","is_error":false,"duration_ms":12,"result":"Cursor says hi.","session_id":"s1","usage":{"input_tokens":11,"output_tokens":4}}'
"#;
        for (name, body) in [("auggie", auggie), ("cursor-agent", cursor)] {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", dir.display()));
        *DIR.lock().unwrap() = Some(dir);
    });
    let dir = DIR.lock().unwrap().clone().unwrap();
    Box::leak(dir.into_boxed_path())
}

fn args_of(dir: &Path, cli: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{cli}.args")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn auggie_adapter_runs_the_cli() {
    let dir = stand_ins();
    let mut c = executor("auggie", "auggie");
    c.allow_commands = vec!["auggie".into()];
    c.config = BTreeMap::from([
        (
            "models".to_string(),
            "auggie, auggie-sonnet=sonnet4".to_string(),
        ),
        ("input_cost_per_mtok".to_string(), "3".to_string()),
    ]);
    let h = host(vec![c], Duration::ZERO);
    let models = h.executor_models();
    assert_eq!(
        models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["auggie", "auggie-sonnet"]
    );
    assert_eq!(models[0].input_cost_per_mtok, 3.0);
    assert_eq!(models[0].executor_kind, "cli");

    let r = h
        .invoke_blocking("auggie", &request("auggie-sonnet", "What is 6*7?"))
        .unwrap();
    assert_eq!(r.text, "The answer is 42.");
    assert_eq!(r.finish_reason, "stop");
    assert_eq!(
        args_of(dir, "auggie"),
        ["--print", "--quiet", "--model", "sonnet4", "What is 6*7?"]
    );

    // A conversation becomes a transcript ending with the latest turn.
    let mut req = request("auggie", "and now?");
    req.messages.insert(
        0,
        Turn {
            role: "assistant".into(),
            text: "earlier answer".into(),
        },
    );
    req.messages.insert(
        0,
        Turn {
            role: "user".into(),
            text: "earlier question".into(),
        },
    );
    h.invoke_blocking("auggie", &req).unwrap();
    let args = args_of(dir, "auggie");
    assert_eq!(&args[..2], ["--print", "--quiet"]);
    let prompt = args[2..].join("\n");
    assert!(
        prompt.starts_with("[user]\nearlier question") && prompt.ends_with("[user]\nand now?"),
        "{prompt}"
    );

    let err = h
        .invoke_blocking("auggie", &request("auggie", "please fail"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not logged in"), "{err}");

    let health = h.check_health("auggie").unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert!(health.detail.contains("stand-in"), "{health:?}");
}

#[test]
fn cursor_agent_adapter_runs_the_cli() {
    let dir = stand_ins();
    let mut c = executor("cursor", "cursor_agent");
    c.allow_commands = vec!["cursor-agent".into()];
    c.config = BTreeMap::from([("models".to_string(), "cursor-gpt5=gpt-5".to_string())]);
    let h = host(vec![c], Duration::ZERO);
    let r = h
        .invoke_blocking("cursor", &request("cursor-gpt5", "hello"))
        .unwrap();
    assert_eq!(r.text, "Cursor says hi.");
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.estimated
        ),
        (11, 4, false)
    );
    assert_eq!(
        args_of(dir, "cursor-agent"),
        ["-p", "--output-format", "json", "--model", "gpt-5", "hello"]
    );

    let err = h
        .invoke_blocking("cursor", &request("cursor-gpt5", "please fail"))
        .unwrap_err();
    assert!(err.to_string().contains("model quota exceeded"), "{err}");
    let err = h
        .invoke_blocking("cursor", &request("cursor-gpt5", "garbled"))
        .unwrap_err();
    assert!(err.to_string().contains("no JSON result"), "{err}");
    let err = h
        .invoke_blocking("cursor", &request("gpt-4o", "hello"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::UnknownModel,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        h.check_health("cursor").unwrap().status,
        HealthStatus::Healthy
    );
}

#[test]
fn cli_adapter_without_the_grant_cannot_run_it() {
    stand_ins();
    let h = host(vec![executor("auggie", "auggie")], Duration::ZERO);
    let err = h
        .invoke_blocking("auggie", &request("auggie", "hi"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not in allow_commands"), "{err}");
    let health = h.check_health("auggie").unwrap();
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert!(h.executor_models().iter().all(|m| !m.healthy));
}

// ---- HTTP executor ---------------------------------------------------------------------------

/// A one-thread HTTP/1.1 server answering every request with `body`; records requests.
fn mock_openai(status: u16, body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body_in = vec![0u8; len];
            let _ = reader.read_exact(&mut body_in);
            log.lock()
                .unwrap()
                .push(format!("{head}\n{}", String::from_utf8_lossy(&body_in)));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn http_executor_calls_an_allowed_openai_endpoint() {
    let (port, seen) = mock_openai(
        200,
        r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from upstream"},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
    );
    let mut c = executor("local", "http_executor");
    c.allow_hosts = vec![format!("127.0.0.1:{port}")];
    c.config = BTreeMap::from([
        (
            "base_url".to_string(),
            format!("http://127.0.0.1:{port}/v1"),
        ),
        ("models".to_string(), "local-llama=llama-3.1-8b".to_string()),
    ]);
    c.secrets
        .insert("api_key".into(), Secret::new("sk-test-123".into()));
    let mut denied = c.clone();
    denied.name = "denied".into();
    denied.allow_hosts = vec!["api.example.com".into()];
    denied.config.insert("models".into(), "other-llama".into());
    let h = host(vec![c, denied], Duration::ZERO);

    let r = h
        .invoke_blocking("local", &request("local-llama", "hi"))
        .unwrap();
    assert_eq!(r.text, "Hello from upstream");
    assert_eq!(r.finish_reason, "length");
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (9, 2));
    let got = seen.lock().unwrap().join("\n");
    assert!(got.starts_with("POST /v1/chat/completions"), "{got}");
    assert!(
        got.to_ascii_lowercase()
            .contains("authorization: bearer sk-test-123"),
        "{got}"
    );
    assert!(
        got.contains(r#""model":"llama-3.1-8b""#) && got.contains(r#""max_tokens":64"#),
        "{got}"
    );
    assert_eq!(
        h.check_health("local").unwrap().status,
        HealthStatus::Healthy
    );

    let err = h
        .invoke_blocking("denied", &request("other-llama", "hi"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not in allow_hosts"), "{err}");
}

#[test]
fn http_executor_maps_upstream_errors_for_fallback() {
    let (port, _) = mock_openai(503, r#"{"error":{"message":"overloaded"}}"#);
    let mut c = executor("local", "http_executor");
    c.allow_hosts = vec!["127.0.0.1".into()];
    c.config = BTreeMap::from([
        (
            "base_url".to_string(),
            format!("http://127.0.0.1:{port}/v1"),
        ),
        ("models".to_string(), "m".to_string()),
    ]);
    let h = host(vec![c], Duration::ZERO);
    let err = h.invoke_blocking("local", &request("m", "hi")).unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Executor {
                kind: ExecutorErrorKind::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("503") && err.to_string().contains("overloaded"),
        "{err}"
    );
    assert_eq!(
        h.check_health("local").unwrap().status,
        HealthStatus::Unhealthy
    );
}

// ---- config and CLI --------------------------------------------------------------------------

#[test]
fn plugins_load_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "plugin_host: {{ cache_dir: {cache}, epoch_tick_ms: 2, unhealthy_cooldown_ms: 1000 }}\n\
         executors:\n  - {{ name: auggie, plugin: {auggie}, allow_commands: [auggie], timeout_ms: 120000, config: {{ models: auggie }} }}\n\
         feature_extractors:\n  - {{ name: code-features, plugin: {cf} }}\n\
         plugins:\n  - {{ name: echo, path: {te}, kind: executor, memory_mb: 16, timeout_ms: 250 }}\n",
        cache = cache_dir().display(),
        auggie = dist("auggie").display(),
        cf = dist("code_features").display(),
        te = dist("test_executor").display(),
    );
    let path = dir.path().join("dualrouter.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = dualrouter_core::config::load(&path).unwrap();
    assert_eq!(cfg.plugins.plugins.len(), 3);
    assert_eq!(cfg.plugins.epoch_tick, Duration::from_millis(2));
    let echo = cfg
        .plugins
        .plugins
        .iter()
        .find(|p| p.name == "echo")
        .unwrap();
    assert_eq!(
        (echo.memory_bytes, echo.timeout),
        (16 << 20, Duration::from_millis(250))
    );
    let cf = cfg
        .plugins
        .plugins
        .iter()
        .find(|p| p.name == "code-features")
        .unwrap();
    assert_eq!(
        (cf.memory_bytes, cf.timeout),
        (64 << 20, Duration::from_millis(100))
    );
    let h = PluginHost::new(&cfg.plugins).unwrap();
    assert_eq!(h.plugin_names(PluginKind::Executor), ["echo", "auggie"]);
    assert_eq!(
        h.plugin_names(PluginKind::FeatureExtractor),
        ["code-features"]
    );
    assert_eq!(h.plugin_for_model("auggie"), Some("auggie"));
    let err = h
        .invoke_blocking("echo", &request("test-loop", "x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Timeout {
                timeout_ms: 250,
                ..
            }
        ),
        "{err}"
    );

    std::fs::write(
        &path,
        "feature_extractors:\n  - { name: x, plugin: x.wasm, allow_commands: [sh] }\n",
    )
    .unwrap();
    let err = dualrouter_core::config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("feature_extractors[0]: feature extractors get no process"),
        "{err}"
    );
}

fn inspect(file: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(["plugin", "inspect"])
        .arg(file)
        .env("DUALROUTER_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_prints_world_version_exports_and_models() {
    let (ok, out, err) = inspect(&dist("auggie"));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("world:    executor"), "{out}");
    assert!(
        out.contains("WIT:      dualrouter:plugin@0.1.0 (supported)"),
        "{out}"
    );
    for f in ["describe", "health", "invoke"] {
        assert!(
            out.contains(&format!("dualrouter:plugin/executor-api@0.1.0#{f}")),
            "{out}"
        );
    }
    assert!(out.contains("dualrouter:plugin/process@0.1.0"), "{out}");
    assert!(out.contains("models:\n  auggie  context 200000"), "{out}");

    let (ok, out, _) = inspect(&dist("code_features"));
    assert!(ok);
    assert!(
        out.contains("world:    feature-extractor") && out.contains("extractor-api@0.1.0#extract"),
        "{out}"
    );
    assert!(!out.contains("models:"), "{out}");

    let (ok, out, err) = inspect(&dist("test_wrong_version"));
    assert!(!ok);
    assert!(
        out.contains(
            "dualrouter:plugin@9.0.0 (NOT supported; this host speaks dualrouter:plugin@0.1.0)"
        ),
        "{out}"
    );
    assert!(
        err.contains("this host speaks dualrouter:plugin@0.1.0"),
        "{err}"
    );
}

// ---- serve -----------------------------------------------------------------------------------

mod common;

fn serve_yaml(plugin_lines: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         providers:\n  - {{ name: a, kind: openai, base_url: http://127.0.0.1:1/v1, models: [ {{ id: m }} ] }}\n\
         plugin_host: {{ cache_dir: {} }}\n{plugin_lines}",
        cache_dir().display()
    )
}

#[tokio::test]
async fn serve_loads_plugins_at_start_and_exports_their_metrics() {
    let yaml = serve_yaml(&format!(
        "feature_extractors:\n  - {{ name: code-features, plugin: {} }}\n",
        dist("code_features").display()
    ));
    let p = common::Proxy::start(&yaml).await;
    let metrics = reqwest::get(format!("{}/metrics", p.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"dualrouter_plugin_healthy{plugin="code-features"} 1"#),
        "{metrics}"
    );
    assert!(p.log().contains("plugin loaded"), "{}", p.log());
}

#[test]
fn serve_refuses_a_plugin_built_for_an_unknown_wit_version() {
    let dir = tempfile::tempdir().unwrap();
    common::link_repo_files(dir.path());
    let path = dir.path().join("config.yaml");
    let yaml = serve_yaml(&format!(
        "database: sqlite://{}/db.sqlite\nfeature_extractors:\n  - {{ name: old, plugin: {} }}\n",
        dir.path().display(),
        dist("test_wrong_version").display()
    ));
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin 'old' is built for WIT dualrouter:plugin@9.0.0; this host speaks dualrouter:plugin@0.1.0"),
        "{err}"
    );
}

/// Called straight from async code (a tokio worker thread): WASI's sync bindings would block on
/// a runtime inside the runtime; the host must keep that off the caller's thread.
#[tokio::test]
async fn calls_from_inside_a_tokio_runtime_work() {
    let h = host(
        vec![
            extractor("bad", "test_extractor"),
            extractor("code-features", "code_features"),
            test_executor("t"),
        ],
        Duration::ZERO,
    );
    // A trap writes its panic message to stderr (WASI streams) before it traps.
    let err = h.extract("bad", &conv(&[("user", "trap")])).unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert!(err.to_string().contains("deliberate trap"), "{err}");
    let f = h.extract_features(&conv(&[("user", "fn main() {}")]));
    assert_eq!(f["code-features.has_code"], 1.0, "{f:?}");
    let err = h
        .invoke_blocking("t", &request("t-test-trap", "x"))
        .unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert_eq!(h.check_health("t").unwrap().status, HealthStatus::Healthy);
}
