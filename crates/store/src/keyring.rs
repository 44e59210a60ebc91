//! The request path's view of virtual keys: a local cache of key records (refreshed when any
//! instance changes a key, told by `NOTIFY dualrouter_keys`, and every few seconds), the
//! per-request gate (rate window, budget left), the budget reservation, and the settlements
//! that apply each request's real cost, written in batches by one background task that keeps
//! retrying while the database is away (so no spend is lost once it is back).
//!
//! Losing the database is a policy ([`KeyPolicy`]): fail closed (refuse), or fail open with a
//! bounded allowance per key and instance, charged to the key once the database is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::keys::{
    hash_secret, minute_of, BudgetCount, KeyStatus, RateCount, Settlement, VirtualKey,
};
use super::{Store, StoreError};

/// How often the whole key cache is re-read, in case a notification was missed (SQLite has
/// none: one instance, whose own edits refresh the cache at once).
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Most settlements per transaction.
const SETTLE_BATCH: usize = 256;
/// How long a key the store did not know is answered "unknown" without asking it again (a
/// flood of wrong keys costs the store one query per key per this long); a refresh forgets.
const MISS_TTL: Duration = Duration::from_secs(1);
/// Most remembered misses; past it they are all forgotten.
const MAX_MISSES: usize = 10_000;

/// What happens when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Serve keys from the cache while the store is unreachable, each within `allowance_nusd`.
    pub fail_open: bool,
    /// The most one key may spend on this instance while the store is unreachable (nano-USD).
    pub allowance_nusd: i64,
}

/// A presented key, looked up.
#[derive(Debug, Clone)]
pub enum Lookup {
    Key(Arc<VirtualKey>),
    Unknown,
    Revoked,
    Expired,
    /// Not in the cache, and the store cannot say.
    Unavailable,
}

/// Why a request with a valid key is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Over `rpm` (`tokens: false`) or `tpm` (`tokens: true`) in this minute.
    RateLimited {
        tokens: bool,
        count: RateCount,
        reset_s: u64,
    },
    /// The reservation would pass the budget.
    BudgetExceeded {
        count: BudgetCount,
        budget_nusd: i64,
    },
    /// The store is unreachable and the policy (or the allowance) says no.
    Unavailable,
}

/// What the gate learnt before routing.
#[derive(Debug, Clone)]
pub struct Gate {
    pub at: DateTime<Utc>,
    /// The minute window the request was counted in.
    pub minute: i64,
    /// Seconds until that window ends.
    pub reset_s: u64,
    /// The window's counts after this request (when the key has a rate limit).
    pub rate: Option<RateCount>,
    /// Budget left now (spent and in-flight reservations taken off), when the key has one.
    pub budget_left_nusd: Option<i64>,
    /// The store could not be reached and the fail-open policy let the request through.
    pub degraded: bool,
}

/// A request's hold on its key's budget, until [`Keyring::settle`].
#[derive(Debug, Clone)]
pub struct Reservation {
    key_id: String,
    team: Option<String>,
    period: Option<String>,
    /// Reserved on the store's counter.
    reserved_nusd: i64,
    /// Taken from the fail-open allowance instead.
    local_nusd: i64,
    minute: i64,
}

impl Reservation {
    /// The amount held (on the store or locally), nano-USD.
    pub fn amount_nusd(&self) -> i64 {
        self.reserved_nusd + self.local_nusd
    }
}

/// What a finished request used.
#[derive(Debug, Clone, Default)]
pub struct Charge {
    pub cost_nusd: i64,
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
}

pub struct Keyring {
    store: Store,
    by_hash: RwLock<HashMap<String, Arc<VirtualKey>>>,
    /// Hashes the store did not know, and when it said so.
    misses: Mutex<HashMap<String, std::time::Instant>>,
    settle_tx: mpsc::UnboundedSender<Settlement>,
    settle_rx: Mutex<Option<mpsc::UnboundedReceiver<Settlement>>>,
    /// Spend per key id on this instance while the store was unreachable.
    outage: Mutex<HashMap<String, i64>>,
    pending: AtomicI64,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("store", &self.store.backend())
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Keyring {
    pub fn new(store: Store) -> Arc<Self> {
        let (settle_tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            store,
            by_hash: RwLock::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
            settle_tx,
            settle_rx: Mutex::new(Some(rx)),
            outage: Mutex::new(HashMap::new()),
            pending: AtomicI64::new(0),
        })
    }

    /// Starts the background tasks (settlement writer, key follower) on the current runtime,
    /// which must be the one the store's pool lives on. Call once.
    pub fn start(self: &Arc<Self>) {
        if let Some(rx) = lock(&self.settle_rx).take() {
            let me = self.clone();
            tokio::spawn(async move { me.write_settlements(rx).await });
        }
        let me = self.clone();
        tokio::spawn(async move { me.follow().await });
    }

    /// Settlements sent but not yet written to the store.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Re-reads every key into the cache.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let keys = self.store.list_keys().await?;
        let map: HashMap<String, Arc<VirtualKey>> = keys
            .into_iter()
            .map(|k| (k.secret_hash.clone(), Arc::new(k)))
            .collect();
        let n = map.len();
        lock(&self.misses).clear();
        *self
            .by_hash
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        Ok(n)
    }

    /// A presented key found in the cache, without touching the store (`None`: not cached).
    pub fn cached(&self, secret: &str) -> Option<Lookup> {
        let hash = hash_secret(secret);
        let key = self
            .by_hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hash)
            .cloned()?;
        Some(Self::judge(key))
    }

    fn judge(key: Arc<VirtualKey>) -> Lookup {
        match key.status(Utc::now()) {
            KeyStatus::Active => Lookup::Key(key),
            KeyStatus::Revoked => Lookup::Revoked,
            KeyStatus::Expired => Lookup::Expired,
        }
    }

    /// Finds a presented key: in the cache, else in the store (a key made on another
    /// instance a moment ago).
    pub async fn lookup(&self, secret: &str) -> Lookup {
        let hash = hash_secret(secret);
        let cached = self
            .by_hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hash)
            .cloned();
        let key = match cached {
            Some(k) => k,
            None if lock(&self.misses)
                .get(&hash)
                .is_some_and(|at| at.elapsed() < MISS_TTL) =>
            {
                return Lookup::Unknown;
            }
            None => match self.store.find_key_by_hash(&hash).await {
                Ok(Some(k)) => {
                    let k = Arc::new(k);
                    self.by_hash
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(hash, k.clone());
                    k
                }
                Ok(None) => {
                    let mut misses = lock(&self.misses);
                    if misses.len() >= MAX_MISSES {
                        misses.clear();
                    }
                    misses.insert(hash, std::time::Instant::now());
                    return Lookup::Unknown;
                }
                Err(e) => {
                    tracing::warn!("key lookup: {e}");
                    return Lookup::Unavailable;
                }
            },
        };
        Self::judge(key)
    }

    /// Before routing: counts the request in the key's minute window (refusing it past a
    /// limit) and reads the budget left (`want_budget`).
    pub async fn gate(
        &self,
        key: &VirtualKey,
        want_budget: bool,
        policy: KeyPolicy,
    ) -> Result<Gate, Refusal> {
        let at = Utc::now();
        let (minute, reset_s) = minute_of(at);
        let mut gate = Gate {
            at,
            minute,
            reset_s,
            rate: None,
            budget_left_nusd: None,
            degraded: false,
        };
        let limits = key.rate_limit;
        if limits.rpm.is_some() || limits.tpm.is_some() {
            match self
                .store
                .hit_rate(&key.id, minute, limits.rpm, limits.tpm)
                .await
            {
                Ok(count) if count.admitted => gate.rate = Some(count),
                Ok(count) => {
                    let tokens = limits.rpm.is_none_or(|rpm| count.requests < rpm);
                    return Err(Refusal::RateLimited {
                        tokens,
                        count,
                        reset_s,
                    });
                }
                Err(e) => return self.degrade(gate, policy, e),
            }
        }
        if let (Some(budget), true) = (key.budget, want_budget) {
            let period = budget.period.key_at(at);
            match self.store.budget_count(&key.id, &period).await {
                Ok(c) => {
                    gate.budget_left_nusd =
                        Some(super::keys::to_nano(budget.usd) - c.spent_nusd - c.reserved_nusd);
                }
                Err(e) => return self.degrade(gate, policy, e),
            }
        }
        Ok(gate)
    }

    fn degrade(&self, mut gate: Gate, policy: KeyPolicy, e: StoreError) -> Result<Gate, Refusal> {
        tracing::warn!("key store unreachable: {e}");
        if policy.fail_open {
            gate.degraded = true;
            Ok(gate)
        } else {
            Err(Refusal::Unavailable)
        }
    }

    /// Holds `amount_nusd` of the key's budget for this request (nothing to hold without a
    /// budget). Refused when the budget cannot take it.
    pub async fn reserve(
        &self,
        key: &VirtualKey,
        gate: &Gate,
        amount_nusd: i64,
        policy: KeyPolicy,
    ) -> Result<Reservation, Refusal> {
        let mut r = Reservation {
            key_id: key.id.clone(),
            team: key.team.clone(),
            period: None,
            reserved_nusd: 0,
            local_nusd: 0,
            minute: gate.minute,
        };
        let Some(budget) = key.budget else {
            return Ok(r);
        };
        let period = budget.period.key_at(gate.at);
        let budget_nusd = super::keys::to_nano(budget.usd);
        r.period = Some(period.clone());
        let amount = amount_nusd.max(0);
        if !gate.degraded {
            match self
                .store
                .reserve_budget(&key.id, &period, amount, budget_nusd)
                .await
            {
                Ok(Some(_)) => {
                    // The store answers again: a new outage starts a new allowance.
                    lock(&self.outage).remove(&key.id);
                    r.reserved_nusd = amount;
                    return Ok(r);
                }
                Ok(None) => {
                    let count = self
                        .store
                        .budget_count(&key.id, &period)
                        .await
                        .unwrap_or_default();
                    return Err(Refusal::BudgetExceeded { count, budget_nusd });
                }
                Err(e) => {
                    tracing::warn!("key store unreachable: {e}");
                    if !policy.fail_open {
                        return Err(Refusal::Unavailable);
                    }
                }
            }
        }
        // Fail open: within the key's allowance on this instance.
        let mut outage = lock(&self.outage);
        let used = outage.entry(key.id.clone()).or_insert(0);
        if *used + amount > policy.allowance_nusd {
            return Err(Refusal::Unavailable);
        }
        *used += amount;
        r.local_nusd = amount;
        Ok(r)
    }

    /// Releases a reservation and charges the request's real cost, asynchronously: the
    /// settlement is queued for the writer, which retries until the store takes it.
    pub fn settle(&self, r: Reservation, charge: Charge) {
        if r.local_nusd > 0 {
            let mut outage = lock(&self.outage);
            if let Some(used) = outage.get_mut(&r.key_id) {
                *used += charge.cost_nusd - r.local_nusd;
            }
        }
        let s = Settlement {
            key_id: r.key_id,
            team: r.team,
            period: r.period,
            reserved_nusd: r.reserved_nusd,
            cost_nusd: charge.cost_nusd,
            model: charge.model,
            input_tokens: charge.input_tokens,
            output_tokens: charge.output_tokens,
            cached_tokens: charge.cached_tokens,
            minute: r.minute,
            at: Utc::now(),
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.settle_tx.send(s).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("settlement writer stopped; a request's spend is not recorded");
        }
    }

    async fn write_settlements(&self, mut rx: mpsc::UnboundedReceiver<Settlement>) {
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        loop {
            match rx.recv().await {
                Some(s) => batch.push(s),
                None => return,
            }
            while batch.len() < SETTLE_BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.store.settle(&batch).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(
                            settlements = batch.len(),
                            "spend not written yet, retrying: {e}"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            self.pending.fetch_sub(batch.len() as i64, Ordering::SeqCst);
            batch.clear();
        }
    }

    /// Keeps the cache current: a notification from any instance re-reads it at once, and it
    /// is re-read every few seconds anyway; old rate windows are pruned once a minute.
    async fn follow(&self) {
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        let mut listen_tried = false;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            if listener.is_none() && (!listen_tried || matches!(self.store, Store::Postgres(_))) {
                listen_tried = true;
                match self.store.listen_keys().await {
                    Ok(l) => listener = l,
                    Err(e) => tracing::debug!("cannot LISTEN for key changes yet: {e}"),
                }
            }
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        r = l.recv() => {
                            if let Err(e) = r {
                                tracing::warn!("key listener: {e}");
                                listener = None;
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            } else {
                                while l.next_buffered().is_some() {}
                            }
                        }
                        _ = tokio::time::sleep(REFRESH_EVERY) => {}
                    }
                }
                None => {
                    tokio::time::sleep(if matches!(self.store, Store::Postgres(_)) {
                        Duration::from_millis(500)
                    } else {
                        REFRESH_EVERY
                    })
                    .await
                }
            }
            if let Err(e) = self.refresh().await {
                tracing::debug!("key cache refresh: {e}");
            }
            if last_prune.elapsed() >= Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                let (minute, _) = minute_of(Utc::now());
                if let Err(e) = self.store.prune_rate(minute - 2).await {
                    tracing::debug!("pruning rate windows: {e}");
                }
            }
        }
    }
}
