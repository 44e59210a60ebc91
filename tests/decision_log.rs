//! The decision-log writer against real databases: every record becomes exactly one row,
//! through a PostgreSQL outage, a full queue, and a SIGKILLed process with records in its spool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::TestDb;
use dualrouter_core::config::validated::DecisionLogConfig;
use dualrouter_store::{DecisionLog, DecisionRecord, FlushError, Store};
use prometheus::Registry;

fn log_cfg(spool_dir: &Path, queue_capacity: usize) -> DecisionLogConfig {
    DecisionLogConfig {
        queue_capacity,
        batch_rows: 500,
        batch_ms: Duration::from_millis(50),
        spool_dir: spool_dir.to_path_buf(),
        spool_max_bytes: 64 * 1024 * 1024,
        prompt_preview_chars: 0,
    }
}

fn rec(i: usize) -> DecisionRecord {
    let mut r = DecisionRecord::new(if i.is_multiple_of(10) { "error" } else { "ok" });
    r.prompt_hash = dualrouter_store::prompt_hash(&format!("prompt {i}"));
    r.requested_model = Some("auto".into());
    r.domain = Some("programming".into());
    r.action = Some("code-generation".into());
    r.selected_model = Some("small".into());
    r.provider = Some("alpha".into());
    r.http_status = Some(if i.is_multiple_of(10) { 502 } else { 200 });
    r.input_tokens = Some(i as u64);
    r.output_tokens = Some(2 * i as u64);
    r.cost_usd = Some(i as f64 * 1e-6);
    r.total_latency_ms = Some(12.5);
    r
}

/// Flushes until everything is in the database (the writer may still be degraded for a moment
/// after the database is back).
async fn flush_until_written(log: &DecisionLog, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match log.flush().await {
            Ok(()) => return,
            Err(FlushError::Degraded { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("decision log not written within {within:?}: {e}"),
        }
    }
}

async fn assert_rows(store: &Store, ids: &HashSet<String>) {
    let (rows, distinct) = store.count_decisions().await.unwrap();
    assert_eq!(rows, distinct, "a decision id was stored twice");
    assert_eq!(rows as usize, ids.len(), "rows != distinct records");
    // And they are the right ones.
    let sample: Vec<&String> = ids.iter().step_by(97).collect();
    for id in sample {
        assert!(
            store.get_decision(id).await.unwrap().is_some(),
            "decision {id} missing"
        );
    }
}

async fn ten_thousand(db: TestDb) {
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    // A small queue: a tight loop overflows it, so the spool path runs on a healthy DB too.
    let log = DecisionLog::start(store.clone(), &log_cfg(spool.path(), 256), &registry).unwrap();
    let mut ids = HashSet::new();
    for i in 0..10_000 {
        let r = rec(i);
        ids.insert(r.decision_id.clone());
        log.record(r);
        if (i + 1).is_multiple_of(1000) {
            tokio::task::yield_now().await;
        }
    }
    flush_until_written(&log, Duration::from_secs(60)).await;
    assert_rows(&store, &ids).await;
    let m = log.metrics();
    assert_eq!(m.written.get(), 10_000);
    assert_eq!(m.dropped.get(), 0);
    assert!(m.queued.get() + m.spooled.get() >= 10_000);
    assert_eq!(log.spool_bytes(), 0);
    // The counters are in the registry under their documented names.
    let names: HashSet<String> = registry
        .gather()
        .iter()
        .map(|f| f.get_name().to_string())
        .collect();
    for n in [
        "dualrouter_decisions_queued_total",
        "dualrouter_decisions_written_total",
        "dualrouter_decisions_spooled_total",
        "dualrouter_decisions_dropped_total",
    ] {
        assert!(names.contains(n), "{n} not registered");
    }
    log.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_ten_thousand_rows_sqlite() {
    ten_thousand(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_ten_thousand_rows_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    ten_thousand(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_run_one_row_per_record() {
    let Some(db) = TestDb::postgres() else { return };
    let cluster = db.cluster().unwrap();
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();
    let log = DecisionLog::start(
        store.clone(),
        &log_cfg(spool.path(), 1000),
        &Registry::new(),
    )
    .unwrap();

    // The outage: stop PostgreSQL while records flow, start it again 1.5 s later.
    let outage = tokio::spawn({
        let cluster = cluster.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.stop_server())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tokio::task::spawn_blocking(move || cluster.start_server())
                .await
                .unwrap();
        }
    });

    let mut ids = HashSet::new();
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let r = rec(i);
        ids.insert(r.decision_id.clone());
        log.record(r);
        if (i + 1).is_multiple_of(100) {
            // About 3 s of traffic in all, so the outage falls in the middle.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let produced_in = started.elapsed();
    outage.await.unwrap();
    assert!(
        produced_in > Duration::from_millis(1500),
        "traffic ended before the outage ({produced_in:?})"
    );

    flush_until_written(&log, Duration::from_secs(60)).await;
    assert_rows(&store, &ids).await;
    let m = log.metrics();
    assert!(m.spooled.get() > 0, "the outage never reached the spool");
    assert_eq!(m.dropped.get(), 0);
    // A batch whose commit was cut off mid-acknowledgement is replayed and skipped, so
    // `written` may undercount; it never overcounts.
    assert!(m.written.get() <= 10_000);
    assert_eq!(log.spool_bytes(), 0);
    log.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// The env vars that make [`spool_child`] run (it is the process the crash test kills).
const CHILD_URL: &str = "DUALROUTER_TEST_CHILD_DB_URL";
const CHILD_SPOOL: &str = "DUALROUTER_TEST_CHILD_SPOOL";
const CHILD_IDS: &str = "DUALROUTER_TEST_CHILD_IDS";

/// Not a test on its own: [`sigkill_with_records_in_spool_replays_all_once`] runs this test
/// binary again with only this test and the env vars above. It records the given ids while
/// the database is down, waits until they are all in the spool, says so, and waits to be
/// killed with SIGKILL.
#[tokio::test]
#[ignore = "child process of sigkill_with_records_in_spool_replays_all_once"]
async fn spool_child() {
    let (Ok(url), Ok(spool), Ok(ids)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_SPOOL),
        std::env::var(CHILD_IDS),
    ) else {
        return;
    };
    // The database is down: connect lazily through a store that will fail every write.
    let store = match Store::connect(&url).await {
        Ok(s) => s,
        Err(_) => Store::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_millis(500))
                .connect_lazy(&url)
                .unwrap(),
        ),
    };
    let log =
        DecisionLog::start(store, &log_cfg(Path::new(&spool), 100), &Registry::new()).unwrap();
    let ids: Vec<String> = std::fs::read_to_string(ids)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut r = rec(i);
        r.decision_id = id.clone();
        log.record(r);
    }
    // Degraded: everything recorded is now in the spool, fsync'd.
    let r = log.flush().await;
    assert!(matches!(r, Err(FlushError::Degraded { .. })), "{r:?}");
    println!("SPOOLED {}", log.metrics().spooled.get());
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// SIGKILLs the child when the test ends, whichever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_records_in_spool_replays_all_once() {
    use std::io::BufRead;

    let Some(db) = TestDb::postgres() else { return };
    let cluster = db.cluster().unwrap();
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();

    // 1000 records written normally.
    let first: Vec<DecisionRecord> = (0..1000).map(rec).collect();
    store.insert_decisions(&first).await.unwrap();

    // The database goes down; a process logs 1500 new records, 500 already written and 100
    // of its new ones twice, then is SIGKILLed with all of it in its spool.
    tokio::task::spawn_blocking({
        let c = cluster.clone();
        move || c.stop_server()
    })
    .await
    .unwrap();
    let fresh: Vec<String> = (0..1500).map(|_| DecisionRecord::new_id()).collect();
    let mut child_ids = fresh.clone();
    child_ids.extend(first[..500].iter().map(|r| r.decision_id.clone()));
    child_ids.extend(fresh[..100].iter().cloned());
    let ids_file = spool.path().join("ids.txt");
    std::fs::write(&ids_file, child_ids.join("\n")).unwrap();

    let mut child = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spool_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, db.url())
            .env(CHILD_SPOOL, spool.path().join("spool"))
            .env(CHILD_IDS, &ids_file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let spooled = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest prints `test spool_child ... ` on the same line.
            if let Some((_, n)) = line.split_once("SPOOLED ") {
                return n.trim().parse::<u64>().unwrap();
            }
        }
        panic!("child exited without spooling");
    });
    let spooled = tokio::time::timeout(Duration::from_secs(60), spooled)
        .await
        .expect("child did not spool in time")
        .unwrap();
    assert_eq!(spooled, child_ids.len() as u64);
    child.0.kill().unwrap(); // SIGKILL
    let status = child.0.wait().unwrap();
    assert!(!status.success());

    // A torn last line, as if the kill had landed mid-write.
    let dir = spool.path().join("spool");
    let on_disk: u64 = ["decisions.spool.jsonl", "decisions.replay.jsonl"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk > 0, "nothing in the spool after the kill");
    let active = dir.join("decisions.spool.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"decision_id":"torn-rec"#).unwrap();
    drop(f);

    // The database is back; a new process replays the spool at start.
    tokio::task::spawn_blocking(move || cluster.start_server())
        .await
        .unwrap();
    let log = DecisionLog::start(
        store.clone(),
        &log_cfg(&spool.path().join("spool"), 100),
        &Registry::new(),
    )
    .unwrap();
    // A record logged right after start is not harmed by the torn line.
    let late = rec(5000);
    log.record(late.clone());
    flush_until_written(&log, Duration::from_secs(60)).await;

    let mut expected: HashSet<String> = first.iter().map(|r| r.decision_id.clone()).collect();
    expected.extend(fresh.iter().cloned());
    expected.insert(late.decision_id.clone());
    assert_rows(&store, &expected).await;
    for id in &fresh {
        assert!(store.get_decision(id).await.unwrap().is_some(), "{id} lost");
    }
    let m = log.metrics();
    assert_eq!(m.written.get(), 1501, "1500 replayed + 1 live");
    assert_eq!(m.dropped.get(), 1, "the torn line");
    assert_eq!(log.spool_bytes(), 0);
    log.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_cap_drops_counts_and_keeps_the_rest() {
    let Some(db) = TestDb::postgres() else { return };
    let cluster = db.cluster().unwrap();
    let store = db.open().await;
    tokio::task::spawn_blocking({
        let c = cluster.clone();
        move || c.stop_server()
    })
    .await
    .unwrap();

    // Equal-sized records; the cap holds ten and a half of them.
    let fixed = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let recs: Vec<DecisionRecord> = (0..50)
        .map(|_| {
            let mut r = rec(7);
            r.created_at = fixed;
            r
        })
        .collect();
    let line = serde_json::to_vec(&recs[0]).unwrap().len() as u64 + 1;
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = log_cfg(spool.path(), 1000);
    cfg.spool_max_bytes = line * 10 + line / 2;
    let log = DecisionLog::start(store.clone(), &cfg, &Registry::new()).unwrap();
    for r in &recs {
        log.record(r.clone());
    }
    assert!(matches!(
        log.flush().await,
        Err(FlushError::Degraded { .. })
    ));
    let m = log.metrics();
    assert_eq!(m.spooled.get(), 10);
    assert_eq!(m.dropped.get(), 40);
    assert_eq!(log.spool_bytes(), line * 10);

    tokio::task::spawn_blocking(move || cluster.start_server())
        .await
        .unwrap();
    flush_until_written(&log, Duration::from_secs(60)).await;
    let kept: HashSet<String> = recs[..10].iter().map(|r| r.decision_id.clone()).collect();
    assert_rows(&store, &kept).await;
    log.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn prompt_preview_follows_config() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();
    for (chars, expected) in [(0usize, None), (5, Some("héllo"))] {
        let mut cfg = log_cfg(&spool.path().join(chars.to_string()), 10);
        cfg.prompt_preview_chars = chars;
        let log = DecisionLog::start(store.clone(), &cfg, &Registry::new()).unwrap();
        let mut r = rec(1);
        r.prompt_preview = Some("héllo world, a long prompt".into());
        let id = r.decision_id.clone();
        log.record(r);
        assert_eq!(log.preview("héllo world").as_deref(), expected);
        flush_until_written(&log, Duration::from_secs(10)).await;
        let got = store.get_decision(&id).await.unwrap().unwrap();
        assert_eq!(got.prompt_preview.as_deref(), expected);
        log.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn shutdown_drains_the_queue() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = log_cfg(spool.path(), 5000);
    // A long batch window: without the drain nothing would be written yet.
    cfg.batch_ms = Duration::from_secs(30);
    cfg.batch_rows = 100_000;
    let log = DecisionLog::start(store.clone(), &cfg, &Registry::new()).unwrap();
    let mut ids = HashSet::new();
    for i in 0..3000 {
        let r = rec(i);
        ids.insert(r.decision_id.clone());
        log.record(r);
    }
    log.shutdown(Duration::from_secs(20)).await.unwrap();
    assert_rows(&store, &ids).await;
    // After shutdown a record is not lost: it waits in the spool for the next start.
    log.record(rec(1));
    assert!(log.spool_bytes() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_database_refuses_is_dropped_without_holding_up_the_rest() {
    let Some(db) = TestDb::postgres() else { return };
    let store = db.open().await;
    let spool = tempfile::tempdir().unwrap();
    let log = DecisionLog::start(
        store.clone(),
        &log_cfg(spool.path(), 1000),
        &Registry::new(),
    )
    .unwrap();
    let mut ids = HashSet::new();
    for i in 0..300 {
        let mut r = rec(i);
        if i == 150 {
            // PostgreSQL refuses NUL in TEXT: this row can never be written.
            r.domain = Some("bad\0domain".into());
        } else {
            ids.insert(r.decision_id.clone());
        }
        log.record(r);
    }
    flush_until_written(&log, Duration::from_secs(60)).await;
    assert_rows(&store, &ids).await;
    assert_eq!(log.metrics().dropped.get(), 1);
    assert_eq!(log.metrics().written.get(), 299);
    log.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// `explore` (migration 20261207000010) is written and read back, in both dialects.
async fn explore_round_trips(db: TestDb) {
    let store = db.open().await;
    let mut explored = rec(1);
    explored.explore = true;
    let plain = rec(2);
    store
        .insert_decisions(&[explored.clone(), plain.clone()])
        .await
        .unwrap();
    let a = store
        .get_decision(&explored.decision_id)
        .await
        .unwrap()
        .unwrap();
    let b = store
        .get_decision(&plain.decision_id)
        .await
        .unwrap()
        .unwrap();
    assert!(a.explore);
    assert!(!b.explore);
}

#[tokio::test]
async fn explore_round_trips_sqlite() {
    explore_round_trips(TestDb::sqlite()).await;
}

#[tokio::test]
async fn explore_round_trips_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    explore_round_trips(db).await;
}
