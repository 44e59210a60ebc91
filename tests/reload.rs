//! Hot reload through the real binary: the config file watched and `POST /api/reload`, an
//! invalid config refused while the old one keeps serving, reloads every 2 s under steady
//! traffic losing nothing, a checkpoint change changing routing, a policy created on one
//! instance routing on another that shares PostgreSQL within a second, a graceful shutdown
//! letting an open stream finish and serving requests sent on idle keep-alive connections, and a
//! zero-downtime upgrade under steady traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::synthetic::{ask, chat, config, hard, inverse_checkpoint};
use common::{PgCluster, Proxy};
use dualrouter_testkit::Mock;
use serde_json::{json, Value};

async fn post_reload(p: &Proxy) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/reload", p.admin))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn config_path(p: &Proxy) -> std::path::PathBuf {
    p.dir.path().join("config.yaml")
}

/// Rewrites the proxy's config file with one substitution.
fn edit(p: &Proxy, from: &str, to: &str) {
    let path = config_path(p);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

async fn model_ids(p: &Proxy) -> Vec<String> {
    let v: Value = reqwest::get(p.url("/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn metric(p: &Proxy, line_start: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", p.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn invalid_config_is_refused_and_valid_changes_apply() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(
        &cheap,
        &strong,
        "reload: { poll_ms: 100, debounce_ms: 100 }\n",
    ))
    .await;
    let good = std::fs::read_to_string(config_path(&p)).unwrap();

    // Two problems at once: both named, with their paths; the old state keeps serving.
    let bad = good.replace(
        "cost_per_mtok: { input: 0.1,",
        "cost_per_mtok: { input: -1,",
    ) + "routing: { max_attempts: 0 }\n";
    std::fs::write(config_path(&p), bad).unwrap();
    let (s, v) = post_reload(&p).await;
    assert_eq!(s, 422, "{v}");
    let reasons: Vec<&str> = v["error"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("routing.max_attempts")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("providers[0].models[0].cost_per_mtok.input")),
        "{reasons:?}"
    );
    let a = ask(
        &p,
        "/v1/chat/completions",
        &chat("say hello to Ada", false),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        metric(
            &p,
            "dualrouter_reloads_total{result=\"failed\",trigger=\"config\"}"
        )
        .await
            >= 1.0
    );

    // A valid change written to the file is picked up by the watcher: a new model appears.
    let with_model = good.replace(
        "      - { id: cheap, upstream_id: echo,",
        "      - { id: cheap-2, upstream_id: echo }\n      - { id: cheap, upstream_id: echo,",
    );
    std::fs::write(config_path(&p), with_model).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !model_ids(&p).await.contains(&"cheap-2".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the watcher never applied the change:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = ask(
        &p,
        "/v1/chat/completions",
        &json!({"model": "cheap-2", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A setting only a restart applies is named, and the rest applies.
    let text = std::fs::read_to_string(config_path(&p)).unwrap();
    let moved = text.replace("\ndatabase: sqlite://", "\ndatabase: sqlite://moved-");
    std::fs::write(config_path(&p), moved).unwrap();
    let (s, v) = post_reload(&p).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["restart_needed"], json!(["database"]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_every_two_seconds_under_steady_traffic_fail_nothing() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    // (The synthetic world's tight timeouts are for its timeout tests; this one measures reloads.)
    let yaml = config(&cheap, &strong, "reload: { watch: false }\n").replace(
        "limits: { first_byte_ms: 1500, idle_ms: 1500 }",
        "limits: { first_byte_ms: 10000, idle_ms: 10000 }",
    );
    let p = Arc::new(Proxy::start(&yaml).await);
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (p, failures, done) = (p.clone(), failures.clone(), done.clone());
        tokio::spawn(async move {
            // 25 requests a second for 11 s: routed, concrete, streamed.
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            let mut tasks = Vec::new();
            for i in 0..275usize {
                tick.tick().await;
                let (p, failures, done) = (p.clone(), failures.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let body = match i % 3 {
                        0 => chat(&format!("say hello to Ada, turn {i}"), false),
                        1 => json!({"model": "strong", "messages": [{"role": "user", "content": "hi"}]}),
                        _ => chat(&format!("prove a theorem, part {i}"), true),
                    };
                    let a = ask(&p, "/v1/chat/completions", &body, &[]).await;
                    let complete = i % 3 != 2 || a.body.contains("[DONE]") || a.body.contains("message_stop") || a.body.contains("tok2");
                    if a.status != 200 || !complete {
                        failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("request {i} failed: {} {}", a.status, a.body);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let mut reloads = 0;
    for round in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Alternate a real change (a price) so each reload builds a different state.
        let (from, to) = if round % 2 == 0 {
            ("input: 5, output: 15", "input: 6, output: 15")
        } else {
            ("input: 6, output: 15", "input: 5, output: 15")
        };
        edit(&p, from, to);
        let (s, v) = post_reload(&p).await;
        assert_eq!(s, 200, "{v}");
        reloads += 1;
    }
    traffic.await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 275);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{}", p.log());
    assert_eq!(
        metric(&p, "dualrouter_config_generation").await,
        1.0 + reloads as f64
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_checkpoint_changes_routing() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let p = Proxy::start(&config(&cheap, &strong, "reload: { watch: false }\n")).await;
    let route = |prompt: String| {
        let p = &p;
        async move {
            let a = ask(p, "/v1/route", &json!({ "prompt": prompt }), &[]).await;
            let v: Value = serde_json::from_str(&a.body).unwrap();
            v["selected_model"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(route(hard(700)).await, "strong");
    let text = std::fs::read_to_string(config_path(&p)).unwrap();
    let current = common::synthetic::checkpoint().display().to_string();
    std::fs::write(
        config_path(&p),
        text.replace(&current, &inverse_checkpoint().display().to_string()),
    )
    .unwrap();
    let (s, v) = post_reload(&p).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(route(hard(700)).await, "cheap");
    // The active checkpoint in the store followed the config.
    let list: Value = reqwest::get(format!("{}/api/mirt/checkpoints", p.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert!(active[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("inverse.json"));
    assert_eq!(v["checkpoint_version"], active[0]["version"]);
}

/// A restart whose config names another checkpoint file scores with it: the active row an
/// earlier config registered gives way (one activated through the API would not).
#[tokio::test]
async fn a_restart_with_another_config_checkpoint_scores_with_it() {
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("database: sqlite://{}/shared.db\n", dir.path().display());
    let first = config(&cheap, &strong, &db);
    let p = Proxy::start(&first).await;
    let a = ask(&p, "/v1/route", &json!({ "prompt": hard(710) }), &[]).await;
    assert!(
        a.body.contains("\"selected_model\":\"strong\""),
        "{}",
        a.body
    );
    drop(p);
    let second = first.replace(
        &common::synthetic::checkpoint().display().to_string(),
        &inverse_checkpoint().display().to_string(),
    );
    assert_ne!(first, second);
    let p = Proxy::start(&second).await;
    let a = ask(&p, "/v1/route", &json!({ "prompt": hard(710) }), &[]).await;
    assert!(
        a.body.contains("\"selected_model\":\"cheap\""),
        "{}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_on_one_instance_routes_on_another_within_a_second() {
    let Some(pg) = PgCluster::start() else { return };
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let yaml = config(&cheap, &strong, &format!("database: {}\n", pg.url()));
    let a = Proxy::start(&yaml).await;
    let b = Proxy::start(&yaml).await;
    let prompt = "how do I file my quarterly VAT return for the bakery";
    let routed_on_b = || async {
        let r = ask(&b, "/v1/route", &json!({ "prompt": prompt }), &[]).await;
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["route"]["domain"].as_str().unwrap_or("").to_string()
    };
    assert_ne!(routed_on_b().await, "finance");
    let r = reqwest::Client::new()
        .post(format!("{}/api/routing/policies", a.admin))
        .json(&json!({
            "domain": "finance", "action": "tax",
            "description": "taxes, VAT returns, invoices and bookkeeping",
            "examples": ["how do I file my VAT return", "which invoices are tax deductible", "quarterly tax return for my shop"],
            "models": ["cheap"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created = Instant::now();
    // On A at once (the API answered after the rebuild)…
    let ra = ask(&a, "/v1/route", &json!({ "prompt": prompt }), &[]).await;
    assert!(ra.body.contains("\"domain\":\"finance\""), "{}", ra.body);
    // …and on B within a second.
    loop {
        if routed_on_b().await == "finance" {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "B did not route to the new policy within 1 s:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = created.elapsed();
    eprintln!("policy reached the other instance in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_lets_an_open_stream_finish() {
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
server: {{ grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 20 }}
providers:
  - {{ name: m, kind: openai, base_url: "{}", models: [ {{ id: slow-stream, upstream_id: "stream:10:200" }} ] }}
"#,
        mock.base_url()
    );
    let mut p = Proxy::start(&yaml).await;
    let url = p.url("/v1/chat/completions");
    let mut resp = reqwest::Client::new()
        .post(&url)
        .json(&json!({"model": "slow-stream", "stream": true, "messages": [{"role": "user", "content": "tell me a story"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // SIGTERM while the stream has ~2 s to go.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(p.pid().to_string())
        .status()
        .unwrap();
    let mut body = String::from_utf8_lossy(&first).into_owned();
    while let Some(c) = resp.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&c));
    }
    assert_eq!(body.matches("chat.completion.chunk").count(), 10, "{body}");
    assert!(body.contains("data: [DONE]"), "{body}");
    let status =
        tokio::task::spawn_blocking(move || p.signal_and_wait("TERM", Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_reloaded_health_check_interval_applies() {
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
reload: {{ watch: false }}
routing: {{ health_checks: {{ interval_ms: 0 }} }}
providers:
  - {{ name: m, kind: openai, base_url: "{}", models: [ {{ id: echo, upstream_id: echo }} ] }}
"#,
        mock.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let listed = || mock.state.list_count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(listed(), 0, "checks are off");
    // Turned on by a reload: the provider is asked within about a second, then every 200 ms.
    edit(&p, "interval_ms: 0", "interval_ms: 200");
    let (s, v) = post_reload(&p).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["restart_needed"].as_array().is_none_or(|a| a.is_empty()),
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed() < 3 {
        assert!(
            Instant::now() < deadline,
            "health checks did not start: {}",
            listed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And off again.
    edit(&p, "interval_ms: 200", "interval_ms: 0");
    assert_eq!(post_reload(&p).await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = listed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(listed(), after, "checks went on after being turned off");
}

/// Writes one chat request on a raw connection and reads its whole answer (head, body).
async fn raw_exchange(conn: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"hi"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a Content-Length");
    while buf.len() < head_end + len {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, String::from_utf8_lossy(&buf[head_end..]).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_still_serves_requests_on_idle_keep_alive_connections() {
    use tokio::io::AsyncReadExt;
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
server: {{ grace_period_seconds: 0, drain_linger_ms: 1500 }}
providers:
  - {{ name: m, kind: openai, base_url: "{}", models: [ {{ id: echo, upstream_id: echo }} ] }}
"#,
        mock.base_url()
    );
    let mut p = Proxy::start(&yaml).await;
    let addr = p.proxy.trim_start_matches("http://").to_string();
    // Two clients, each with one answered request on a keep-alive connection, now idle.
    let mut active = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for conn in [&mut active, &mut idle] {
        let (head, _) = raw_exchange(conn)
            .await
            .expect("answered before the signal");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(p.pid().to_string())
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A request written on an idle connection after the signal is served, and the answer
    // tells the client to reconnect.
    let (head, body) = raw_exchange(&mut active)
        .await
        .unwrap_or_else(|| panic!("request lost after SIGTERM:\n{}", p.log()));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.contains("chat.completion"), "{body}");
    let mut rest = Vec::new();
    active.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // The connection that stays idle is closed once the linger is over, and the process exits.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let status =
        tokio::task::spawn_blocking(move || p.signal_and_wait("TERM", Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_downtime_upgrade_hands_the_listener_over() {
    let mock = Mock::start().await;
    let reserved = common::free_port();
    let port = reserved.port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"listen: 127.0.0.1:{port}
admin: {{ listen: 127.0.0.1:0 }}
server: {{ pid_file: {pid}, upgrade_sock: {sock}, grace_period_seconds: 0 }}
providers:
  - {{ name: m, kind: openai, base_url: "{}", models: [ {{ id: echo, upstream_id: echo }} ] }}
"#,
        mock.base_url(),
        pid = dir.path().join("p.pid").display(),
        sock = dir.path().join("u.sock").display(),
    );
    let mut old = Proxy::start(&yaml).await;
    let old_pid = old.pid();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.pid"))
            .unwrap()
            .trim(),
        old_pid.to_string()
    );
    // Steady traffic on the port all along.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(&url)
                    .json(
                        &json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("failed during the upgrade: {other:?}");
                        bad.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new binary asks for the sockets; the old one hands them over on SIGQUIT.
    let new_log = dir.path().join("new.log");
    let ready = dir.path().join("ready.json");
    let mut new = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .arg("serve")
        .arg("--upgrade")
        .arg("--config")
        .arg(old.dir.path().join("config.yaml"))
        .arg("--ready-file")
        .arg(&ready)
        .env("DUALROUTER_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&new_log)
        .unwrap_or_default()
        .contains("Bootstrap starting")
    {
        assert!(
            Instant::now() < deadline,
            "the new process never asked for the sockets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .arg("-QUIT")
        .arg(old_pid.to_string())
        .status()
        .unwrap();
    while old.try_wait().is_none() || !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "hand-over did not finish:\n{}\n{}",
            old.log(),
            std::fs::read_to_string(&new_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served_before = ok.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "requests failed during the upgrade"
    );
    assert!(
        ok.load(Ordering::SeqCst) > served_before,
        "the new process served nothing"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.pid"))
            .unwrap()
            .trim(),
        new.id().to_string()
    );
}
