//! The key counters on both databases: budget reservations that cannot overshoot under
//! concurrency (one pool or two, as two instances would have), settlements, the per-minute
//! window and its leases (several requests counted at once, all or none, also under
//! concurrency), spend grouping, and the key rows themselves (the secret only as a hash).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use dualrouter_store::{
    hash_secret, to_nano, BudgetPeriod, KeyBudget, KeySpec, KeyStatus, RateLimit, Settlement,
    SpendBy, Store, StoreError,
};
use dualrouter_testkit::db::PgCluster;

fn spec(name: &str, budget_usd: Option<f64>, rl: RateLimit) -> KeySpec {
    KeySpec {
        name: name.into(),
        team: Some("team-a".into()),
        models: None,
        budget: budget_usd.map(|usd| KeyBudget {
            usd,
            period: BudgetPeriod::Total,
        }),
        rate_limit: rl,
        max_cost_per_request_usd: None,
        expires_at: None,
        metadata: serde_json::json!({"owner": "tests"}),
    }
}

fn settlement(key_id: &str, period: Option<&str>, reserved: i64, cost: i64) -> Settlement {
    Settlement {
        key_id: key_id.into(),
        team: Some("team-a".into()),
        period: period.map(str::to_string),
        reserved_nusd: reserved,
        cost_nusd: cost,
        model: Some("m1".into()),
        input_tokens: 10,
        output_tokens: 5,
        cached_tokens: 2,
        minute: 0,
        at: Utc::now(),
    }
}

async fn key_rows(store: &Store) {
    let (k, secret) = store
        .create_key(&spec("rows", None, RateLimit::default()))
        .await
        .unwrap();
    assert!(
        secret.starts_with("sk-dr-") && secret.len() > 40,
        "{secret}"
    );
    assert!(secret.starts_with(&k.prefix));
    assert_eq!(k.secret_hash, hash_secret(&secret));
    assert_ne!(k.secret_hash, secret);
    let found = store.find_key_by_hash(&hash_secret(&secret)).await.unwrap();
    assert_eq!(found.as_ref().map(|f| f.id.as_str()), Some(k.id.as_str()));
    assert!(matches!(
        store.create_key(&spec("rows", None, RateLimit::default())).await,
        Err(StoreError::DuplicateKey(n)) if n == "rows"
    ));
    let (rotated, secret2) = store.rotate_key(&k.id).await.unwrap();
    assert_ne!(secret, secret2);
    assert!(store
        .find_key_by_hash(&hash_secret(&secret))
        .await
        .unwrap()
        .is_none());
    assert_eq!(rotated.secret_hash, hash_secret(&secret2));
    let revoked = store.revoke_key(&k.id).await.unwrap();
    assert_eq!(revoked.status(Utc::now()), KeyStatus::Revoked);
    assert!(matches!(
        store.get_key("key_nope").await,
        Err(StoreError::KeyNotFound(_))
    ));
}

async fn budget_counter(store: &Store) {
    let (k, _) = store
        .create_key(&spec("budget", Some(1.0), RateLimit::default()))
        .await
        .unwrap();
    let budget = to_nano(1.0);
    let r = |amount: f64| store.reserve_budget(&k.id, "total", to_nano(amount), budget);
    assert!(r(0.4).await.unwrap().is_some());
    assert!(r(0.4).await.unwrap().is_some());
    assert!(r(0.4).await.unwrap().is_none(), "1.2 reserved of 1.0");
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!((c.spent_nusd, c.reserved_nusd), (0, to_nano(0.8)));
    // The first request cost 0.1: 0.3 of its hold goes back.
    store
        .settle(&[settlement(&k.id, Some("total"), to_nano(0.4), to_nano(0.1))])
        .await
        .unwrap();
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!(
        (c.spent_nusd, c.reserved_nusd),
        (to_nano(0.1), to_nano(0.4))
    );
    assert!(r(0.5).await.unwrap().is_some(), "exactly the budget");
    assert!(store
        .reserve_budget(&k.id, "total", 1, budget)
        .await
        .unwrap()
        .is_none());
    // A settlement made while the store was away (nothing reserved) still spends.
    store
        .settle(&[settlement(&k.id, Some("total"), 0, to_nano(0.25))])
        .await
        .unwrap();
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!(c.spent_nusd, to_nano(0.35));
    // A batch sent again under its id (its first commit's acknowledgement lost) counts once.
    let batch = [settlement(&k.id, Some("total"), 0, to_nano(0.05))];
    assert!(store.settle_once("batch-1", &batch).await.unwrap());
    assert!(!store.settle_once("batch-1", &batch).await.unwrap());
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!(c.spent_nusd, to_nano(0.4));
    assert!(store.settle_once("batch-2", &batch).await.unwrap());
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!(c.spent_nusd, to_nano(0.45));
}

/// `tasks` reservations of 0.1 race on a budget of 1.0, through `stores` (pools).
async fn race(stores: &[Store], name: &str, tasks: usize) {
    let (k, _) = stores[0]
        .create_key(&spec(name, Some(1.0), RateLimit::default()))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let store = stores[i % stores.len()].clone();
        let id = k.id.clone();
        handles.push(tokio::spawn(async move {
            store
                .reserve_budget(&id, "total", to_nano(0.1), to_nano(1.0))
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    assert_eq!(won, 10, "exactly the budget's worth of reservations");
    let c = stores[0].budget_count(&k.id, "total").await.unwrap();
    assert_eq!(c.reserved_nusd, to_nano(1.0));
}

async fn rate_window(store: &Store) {
    let (k, _) = store
        .create_key(&spec(
            "rate",
            None,
            RateLimit {
                rpm: Some(3),
                tpm: Some(100),
            },
        ))
        .await
        .unwrap();
    for i in 1..=3u64 {
        let c = store
            .hit_rate(&k.id, 1000, Some(3), Some(100))
            .await
            .unwrap();
        assert!(c.admitted);
        assert_eq!(c.requests, i);
    }
    let c = store
        .hit_rate(&k.id, 1000, Some(3), Some(100))
        .await
        .unwrap();
    assert!(!c.admitted);
    assert_eq!(c.requests, 3);
    // The next minute starts again; tokens past tpm close it.
    assert!(
        store
            .hit_rate(&k.id, 1001, Some(3), Some(100))
            .await
            .unwrap()
            .admitted
    );
    let mut s = settlement(&k.id, None, 0, 0);
    s.minute = 1001;
    s.input_tokens = 90;
    s.output_tokens = 20;
    store.settle(&[s]).await.unwrap();
    let c = store
        .hit_rate(&k.id, 1001, Some(3), Some(100))
        .await
        .unwrap();
    assert!(!c.admitted, "110 tokens of 100");
    assert_eq!(c.tokens, 110);
    assert_eq!(store.prune_rate(1001).await.unwrap(), 1);
}

/// An instance's lease of a window: `n` requests counted at once, all or none.
async fn rate_leases(store: &Store) {
    let (k, _) = store
        .create_key(&spec("rate-lease", None, RateLimit::default()))
        .await
        .unwrap();
    let lease = |n: u64| store.lease_rate(&k.id, 2000, n, Some(5), None);
    let c = lease(3).await.unwrap();
    assert!(c.admitted);
    assert_eq!(c.requests, 3);
    let c = lease(3).await.unwrap();
    assert!(!c.admitted, "6 of 5");
    assert_eq!(c.requests, 3, "nothing counted when refused");
    assert!(lease(2).await.unwrap().admitted, "exactly the limit");
    let c = lease(1).await.unwrap();
    assert_eq!((c.admitted, c.requests), (false, 5));
    assert!(
        !store
            .lease_rate(&k.id, 2001, 6, Some(5), None)
            .await
            .unwrap()
            .admitted,
        "more than the limit, even in an empty window"
    );
    assert_eq!(store.rate_count(&k.id, 2000).await.unwrap().requests, 5);
}

/// `tasks` leases of 4 requests race on a window of 60, through `stores` (pools).
async fn rate_race(stores: &[Store], name: &str, tasks: usize) {
    let (k, _) = stores[0]
        .create_key(&spec(name, None, RateLimit::default()))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let store = stores[i % stores.len()].clone();
        let id = k.id.clone();
        handles.push(tokio::spawn(async move {
            store
                .lease_rate(&id, 3000, 4, Some(60), None)
                .await
                .unwrap()
                .admitted
        }));
    }
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    assert_eq!(won, 15, "exactly the window's worth of leases");
    let c = stores[0].rate_count(&k.id, 3000).await.unwrap();
    assert_eq!(c.requests, 60);
}

async fn spend_groups(store: &Store) {
    let (a, _) = store
        .create_key(&spec("spend-a", None, RateLimit::default()))
        .await
        .unwrap();
    let mut b_spec = spec("spend-b", None, RateLimit::default());
    b_spec.team = Some("team-b".into());
    let (b, _) = store.create_key(&b_spec).await.unwrap();
    let mut s1 = settlement(&a.id, None, 0, 1000);
    s1.model = Some("g1".into());
    let mut s2 = settlement(&a.id, None, 0, 2000);
    s2.model = Some("g2".into());
    let mut s3 = settlement(&b.id, None, 0, 4000);
    s3.team = Some("team-b".into());
    s3.model = Some("g1".into());
    let mut nothing = settlement(&b.id, None, 0, 0);
    nothing.model = None;
    store.settle(&[s1, s2, s3, nothing]).await.unwrap();
    let since = Utc::now() - chrono::Duration::hours(1);
    let by_key = store.spend(SpendBy::Key, since).await.unwrap();
    let row = |rows: &[dualrouter_store::SpendRow], g: &str| {
        rows.iter().find(|r| r.group == g).cloned().unwrap()
    };
    assert_eq!(row(&by_key, &a.id).requests, 2);
    assert_eq!(row(&by_key, &a.id).name.as_deref(), Some("spend-a"));
    assert!((row(&by_key, &a.id).cost_usd - 3e-6).abs() < 1e-12);
    assert_eq!(
        row(&by_key, &b.id).requests,
        1,
        "no spend row for nothing served"
    );
    let by_team = store.spend(SpendBy::Team, since).await.unwrap();
    assert!((row(&by_team, "team-b").cost_usd - 4e-6).abs() < 1e-12);
    let by_model = store.spend(SpendBy::Model, since).await.unwrap();
    assert_eq!(row(&by_model, "g1").requests, 2);
    assert_eq!(row(&by_model, "g1").cached_tokens, 4);
    assert_eq!(row(&by_model, "g2").input_tokens, 10);
    let later = store
        .spend(SpendBy::Model, Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert!(later.is_empty());
}

async fn all(store: &Store) {
    key_rows(store).await;
    budget_counter(store).await;
    race(std::slice::from_ref(store), "race", 40).await;
    rate_window(store).await;
    rate_leases(store).await;
    rate_race(std::slice::from_ref(store), "rate-race", 30).await;
    spend_groups(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/keys.db", dir.path().display()))
        .await
        .unwrap();
    all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_on_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let store = Store::open(&pg.url()).await.unwrap();
    all(&store).await;
    // Two pools on one database, as two instances: still exactly the budget.
    let other = Store::open(&pg.url()).await.unwrap();
    race(&[store.clone(), other.clone()], "race-two-pools", 60).await;
    rate_race(&[store, other], "rate-race-two-pools", 40).await;
}

/// The keyring hands out a key's rate window and budget from its leases: the first request
/// asks the store, the next ones are answered from memory; real spend is settled exactly and
/// an idle lease goes back to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_leases_on_sqlite() {
    use dualrouter_store::{Charge, KeyPolicy, Keyring};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/keys.db", dir.path().display()))
        .await
        .unwrap();
    let keyring = Keyring::new(store.clone());
    keyring.start();
    let (k, _) = store
        .create_key(&spec(
            "leased",
            Some(1.0),
            RateLimit {
                rpm: Some(1000),
                tpm: None,
            },
        ))
        .await
        .unwrap();
    keyring.refresh().await.unwrap();
    let policy = KeyPolicy {
        fail_open: false,
        allowance_nusd: 0,
    };
    // Keep the requests below in one minute window.
    let secs = Utc::now().timestamp().rem_euclid(60);
    if secs >= 55 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - secs) as u64)).await;
    }

    assert!(
        keyring.try_gate(&k, false, policy).is_none(),
        "nothing leased yet"
    );
    let gate = keyring.gate(&k, false, policy).await.unwrap();
    assert_eq!(gate.rate.unwrap().requests, 1);
    let g2 = keyring
        .try_gate(&k, false, policy)
        .expect("the window's lease answers from memory")
        .unwrap();
    assert_eq!(g2.minute, gate.minute);
    assert_eq!(g2.rate.unwrap().requests, 2);
    // The lease: 1/16 of the 1000 left, at most 32, counted on the store at once.
    let w = store.rate_count(&k.id, gate.minute).await.unwrap();
    assert_eq!(w.requests, 32);

    let est = to_nano(0.001);
    assert!(keyring.try_reserve(&k, &gate, est, policy).is_none());
    let r1 = keyring.reserve(&k, &gate, est, policy).await.unwrap();
    let r2 = keyring.reserve(&k, &gate, est, policy).await.unwrap();
    let r3 = keyring
        .try_reserve(&k, &gate, est, policy)
        .expect("the budget's lease answers from memory")
        .unwrap();
    let c = store.budget_count(&k.id, "total").await.unwrap();
    assert_eq!(c.spent_nusd, 0);
    assert!(
        c.reserved_nusd >= 3 * est && c.reserved_nusd <= 34 * est,
        "the lease is a few estimates, not the budget: {c:?}"
    );
    for r in [r1, r2, r3] {
        assert_eq!(r.amount_nusd(), est);
        keyring.settle(
            r,
            Charge {
                cost_nusd: to_nano(0.0004),
                model: Some("m1".into()),
                input_tokens: 3,
                output_tokens: 4,
                cached_tokens: 0,
            },
        );
    }
    // Settled exactly; the idle lease goes back, so nothing stays reserved.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = store.budget_count(&k.id, "total").await.unwrap();
        if c.reserved_nusd == 0 && keyring.pending() == 0 {
            assert_eq!(c.spent_nusd, 3 * to_nano(0.0004));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never went back: {c:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let by_key = store
        .spend(SpendBy::Key, Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    let row = by_key.iter().find(|r| r.group == k.id).unwrap();
    assert_eq!(
        (row.requests, row.input_tokens, row.output_tokens),
        (3, 9, 12)
    );
}
