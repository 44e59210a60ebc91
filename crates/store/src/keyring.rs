//! The request path's view of virtual keys: a local cache of key records (refreshed when any
//! instance changes a key, told by `NOTIFY dualrouter_keys`, and every few seconds), the
//! per-request gate (rate window, budget left), the budget reservation, and the settlements
//! that apply each request's real cost, written in batches by one background task that keeps
//! retrying while the database is away (so no spend is lost once it is back).
//!
//! Leases keep the store off the request path: each instance takes a slice of a key's budget
//! (reserved on the shared counter by the same conditional UPDATE as any reservation) and a
//! slice of its minute window (requests counted in advance), and hands them out to requests
//! from memory ([`Keyring::try_gate`], [`Keyring::try_reserve`]); they are topped up in the
//! background before they run out, and an idle budget lease goes back. The store's
//! `spent + reserved` still never passes the budget; what a lease costs is that other
//! instances may be refused a little early (docs/operations.md has the bounds).
//!
//! Losing the database is a policy ([`KeyPolicy`]): fail closed (refuse), or fail open with a
//! bounded allowance per key and instance, charged to the key once the database is back. The
//! loss is noticed by any failed store call (the key listener's connection closing is the
//! first), or by the heartbeat; leases are not used until the store answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::keys::{
    hash_secret, minute_of, to_nano, BudgetCount, KeyStatus, RateCount, Settlement, VirtualKey,
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
    /// The budget lease `reserved_nusd` came from (0: none).
    lease: u64,
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

/// Most requests one instance takes from a key's minute window in one store call.
const RATE_LEASE_MAX: u64 = 32;
/// A rate lease is at most this fraction of what is left of the window (`rpm` requests).
const RATE_LEASE_FRACTION: u64 = 16;
/// A budget lease is at most this many times the request's estimate…
const BUDGET_LEASE_REQUESTS: i64 = 32;
/// …and at most this fraction of what is left of the budget on the store.
const BUDGET_LEASE_FRACTION: i64 = 8;
/// A budget lease no request has used for this long goes back to the store.
const LEASE_IDLE: Duration = Duration::from_millis(500);
/// How often the store is pinged and idle leases are returned.
const KEEP_EVERY: Duration = Duration::from_millis(100);
/// A ping that takes longer than this counts as the store being away.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// This instance's slice of a key's budget: reserved on the store's counter (as
/// `reserved_nusd`, one conditional UPDATE, like any reservation) and handed out to requests
/// from memory.
#[derive(Debug)]
struct BudgetLease {
    /// Tells this lease from a later one of the same key (after a period or budget change).
    id: u64,
    period: String,
    budget_nusd: i64,
    /// Reserved on the store for this instance and not yet released.
    held: i64,
    /// Of which requests in flight hold (each releases its part when it settles).
    in_use: i64,
    /// budget − spent − reserved on the store at the last contact (other instances' leases
    /// count as reserved); `None` before the first.
    left_on_store: Option<i64>,
    last_used: std::time::Instant,
    /// The last request's estimate (sizes the next lease).
    last_amount: i64,
}

/// This instance's slice of a key's minute window: requests counted on the store in advance
/// (one conditional upsert for several) and admitted from memory.
#[derive(Debug, Clone, Copy)]
struct RateLease {
    minute: i64,
    /// Requests counted on the store for this instance, not yet used.
    avail: u64,
    /// The window's request count on the store at the last contact (every instance's leased
    /// requests included).
    requests: u64,
    /// Tokens known charged in the window: the store's count at the last contact, or this
    /// instance's own count since, whichever is higher.
    tokens: u64,
    /// What the last lease took (the low-water mark for the next is half of it).
    last_grant: u64,
}

#[derive(Debug, Default)]
struct KeyLeases {
    budget: Option<BudgetLease>,
    rate: Option<RateLease>,
    /// Serialises this instance's store calls for the key's leases.
    refill: Arc<tokio::sync::Mutex<()>>,
}

/// What a budget refill did.
enum Refill {
    /// The lease had (or got) room, and the caller's amount is taken from it.
    Taken(u64),
    /// The budget cannot take the amount.
    Refused,
    /// The lease grew, but this instance's other requests took it first: try again.
    Raced,
    /// A background refill that had nothing to do, or found another in progress.
    Skipped,
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
    /// This instance's leases, per key id.
    leases: Mutex<HashMap<String, KeyLeases>>,
    next_lease: AtomicU64,
    /// Whether the store answered the last call made to it (a request, a settlement batch, a
    /// lease, the heartbeat).
    store_ok: AtomicBool,
    /// The control runtime (where the store's pool lives), for background refills.
    control: OnceLock<tokio::runtime::Handle>,
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
            leases: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(1),
            store_ok: AtomicBool::new(true),
            control: OnceLock::new(),
        })
    }

    /// Starts the background tasks (settlement writer, key follower, heartbeat and lease
    /// keeper) on the current runtime, which must be the one the store's pool lives on. Call
    /// once.
    pub fn start(self: &Arc<Self>) {
        let _ = self.control.set(tokio::runtime::Handle::current());
        if let Some(rx) = lock(&self.settle_rx).take() {
            let me = self.clone();
            tokio::spawn(async move { me.write_settlements(rx).await });
        }
        let me = self.clone();
        tokio::spawn(async move { me.follow().await });
        let me = self.clone();
        tokio::spawn(async move { me.keep().await });
    }

    /// Settlements sent but not yet written to the store.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether the store answered the last call made to it.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::SeqCst)
    }

    /// Notes how a store call went; the first success after a failure starts every key's
    /// fail-open allowance over.
    fn noted<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => {
                if !self.store_ok.swap(true, Ordering::SeqCst) {
                    lock(&self.outage).clear();
                    tracing::info!("key store reachable again");
                }
            }
            Err(e) => {
                if self.store_ok.swap(false, Ordering::SeqCst) {
                    tracing::warn!("key store unreachable: {e}");
                }
            }
        }
        r
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

    fn refill_lock(&self, key_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.leases)
            .entry(key_id.to_string())
            .or_default()
            .refill
            .clone()
    }

    fn new_gate() -> Gate {
        let at = Utc::now();
        let (minute, reset_s) = minute_of(at);
        Gate {
            at,
            minute,
            reset_s,
            rate: None,
            budget_left_nusd: None,
            degraded: false,
        }
    }

    /// The gate from memory alone: `None` when it needs the store ([`Keyring::gate`] then).
    /// Counts the request in the key's window from this instance's lease of it, and reads the
    /// budget left from its budget lease (when the budget is far from spent).
    pub fn try_gate(
        self: &Arc<Self>,
        key: &VirtualKey,
        want_budget: bool,
        policy: KeyPolicy,
    ) -> Option<Result<Gate, Refusal>> {
        let mut gate = Self::new_gate();
        let limits = key.rate_limit;
        let rated = limits.rpm.is_some() || limits.tpm.is_some();
        let budgeted = want_budget && key.budget.is_some();
        if !rated && !budgeted {
            return Some(Ok(gate));
        }
        if !self.store_ok() {
            return Some(Self::degrade(gate, policy));
        }
        if budgeted {
            gate.budget_left_nusd = Some(self.budget_left_local(key, gate.at)?);
        }
        if rated {
            match self.take_rate(key, gate.minute, gate.reset_s)? {
                Ok(count) => gate.rate = Some(count),
                Err(r) => return Some(Err(r)),
            }
        }
        Some(Ok(gate))
    }

    /// Before routing: counts the request in the key's minute window (refusing it past a
    /// limit) and reads the budget left (`want_budget`); from memory when this instance's
    /// leases can answer, else from the store.
    pub async fn gate(
        self: &Arc<Self>,
        key: &VirtualKey,
        want_budget: bool,
        policy: KeyPolicy,
    ) -> Result<Gate, Refusal> {
        let mut gate = Self::new_gate();
        let limits = key.rate_limit;
        let rated = limits.rpm.is_some() || limits.tpm.is_some();
        let budgeted = want_budget && key.budget.is_some();
        if !rated && !budgeted {
            return Ok(gate);
        }
        if !self.store_ok() {
            return Self::degrade(gate, policy);
        }
        if let (Some(budget), true) = (key.budget, budgeted) {
            gate.budget_left_nusd = match self.budget_left_local(key, gate.at) {
                Some(left) => Some(left),
                None => {
                    let period = budget.period.key_at(gate.at);
                    match self.noted(self.store.budget_count(&key.id, &period).await) {
                        Ok(c) => Some(to_nano(budget.usd) - c.spent_nusd - c.reserved_nusd),
                        Err(_) => return Self::degrade(gate, policy),
                    }
                }
            };
        }
        if rated {
            for _ in 0..4 {
                if let Some(taken) = self.take_rate(key, gate.minute, gate.reset_s) {
                    gate.rate = Some(taken?);
                    return Ok(gate);
                }
                if self.refill_rate(key, gate.minute, true).await.is_err() {
                    return Self::degrade(gate, policy);
                }
            }
            // Leases taken by this instance's other requests each time: ask for one alone.
            let Ok(count) = self.noted(
                self.store
                    .hit_rate(&key.id, gate.minute, limits.rpm, limits.tpm)
                    .await,
            ) else {
                return Self::degrade(gate, policy);
            };
            if !count.admitted {
                return Err(Self::rate_refusal(key, count, gate.reset_s));
            }
            gate.rate = Some(count);
        }
        Ok(gate)
    }

    fn rate_refusal(key: &VirtualKey, count: RateCount, reset_s: u64) -> Refusal {
        let tokens = key.rate_limit.rpm.is_none_or(|rpm| count.requests < rpm);
        Refusal::RateLimited {
            tokens,
            count,
            reset_s,
        }
    }

    /// What is left of the key's budget as this instance's lease knows it, when that is far
    /// from running out (near the end the store is asked).
    fn budget_left_local(&self, key: &VirtualKey, at: DateTime<Utc>) -> Option<i64> {
        let budget = key.budget?;
        let period = budget.period.key_at(at);
        let budget_nusd = to_nano(budget.usd);
        let leases = lock(&self.leases);
        let l = leases.get(&key.id)?.budget.as_ref()?;
        if l.period != period || l.budget_nusd != budget_nusd {
            return None;
        }
        let left = l.left_on_store?.saturating_add(l.held - l.in_use);
        (left >= l.last_amount.max(1).saturating_mul(BUDGET_LEASE_REQUESTS)).then_some(left)
    }

    /// Takes one request from this instance's lease of the key's window: `None` when the lease
    /// is used up (or of another minute) and the store must be asked; a refusal when the
    /// window is known to be full (the store would refuse too: a window only fills up).
    fn take_rate(
        self: &Arc<Self>,
        key: &VirtualKey,
        minute: i64,
        reset_s: u64,
    ) -> Option<Result<RateCount, Refusal>> {
        let limits = key.rate_limit;
        let mut leases = lock(&self.leases);
        let r = leases
            .get_mut(&key.id)?
            .rate
            .as_mut()
            .filter(|r| r.minute == minute)?;
        let used = RateCount {
            admitted: false,
            requests: r.requests.saturating_sub(r.avail),
            tokens: r.tokens,
        };
        if limits.tpm.is_some_and(|tpm| r.tokens >= tpm) {
            return Some(Err(Refusal::RateLimited {
                tokens: true,
                count: used,
                reset_s,
            }));
        }
        if r.avail == 0 {
            if limits.rpm.is_some_and(|rpm| r.requests >= rpm) {
                return Some(Err(Refusal::RateLimited {
                    tokens: false,
                    count: RateCount {
                        requests: r.requests,
                        ..used
                    },
                    reset_s,
                }));
            }
            return None;
        }
        r.avail -= 1;
        let count = RateCount {
            admitted: true,
            requests: r.requests.saturating_sub(r.avail),
            tokens: r.tokens,
        };
        // Top up in the background at half the last lease, while a lease would still be
        // several requests: near the window's end, single requests are counted as they come,
        // so no instance holds requests it may never use (others would be refused for them).
        let low = r.avail.saturating_mul(2) <= r.last_grant
            && limits
                .rpm
                .is_none_or(|rpm| rpm.saturating_sub(r.requests) / RATE_LEASE_FRACTION >= 2);
        drop(leases);
        if low {
            self.in_background(key, |me, key| async move {
                let _ = me.refill_rate(&key, minute, false).await;
            });
        }
        Some(Ok(count))
    }

    /// Runs a refill on the control runtime, not waited for.
    fn in_background<F, Fut>(self: &Arc<Self>, key: &VirtualKey, f: F)
    where
        F: FnOnce(Arc<Self>, VirtualKey) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(rt) = self.control.get() {
            rt.spawn(f(self.clone(), key.clone()));
        }
    }

    /// Leases requests of the key's window `minute` from the store: a slice of what is left
    /// (at most 1/16 of `rpm`, at most 32), all of it or none in one conditional upsert.
    /// `wait`: a request needs one (wait for a refill in progress, then do one if still
    /// needed); else a background top-up (skipped if one is in progress).
    async fn refill_rate(
        self: &Arc<Self>,
        key: &VirtualKey,
        minute: i64,
        wait: bool,
    ) -> Result<(), StoreError> {
        let refill = self.refill_lock(&key.id);
        let _guard = if wait {
            refill.lock().await
        } else {
            match refill.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(()),
            }
        };
        let limits = key.rate_limit;
        let (known, avail) = lock(&self.leases)
            .get(&key.id)
            .and_then(|e| e.rate)
            .filter(|r| r.minute == minute)
            .map_or((0, 0), |r| (r.requests, r.avail));
        if wait && avail > 0 {
            return Ok(());
        }
        if limits.rpm.is_some_and(|rpm| known >= rpm) {
            return Ok(());
        }
        let want = limits.rpm.map_or(RATE_LEASE_MAX, |rpm| {
            (rpm.saturating_sub(known) / RATE_LEASE_FRACTION).clamp(1, RATE_LEASE_MAX)
        });
        let mut granted = want;
        let mut count = self.noted(
            self.store
                .lease_rate(&key.id, minute, want, limits.rpm, limits.tpm)
                .await,
        )?;
        if !count.admitted && want > 1 {
            // Less is left than this instance knew: take what is.
            let room = limits
                .rpm
                .map_or(want, |rpm| rpm.saturating_sub(count.requests).min(want));
            let tokens_ok = limits.tpm.is_none_or(|tpm| count.tokens < tpm);
            if room > 0 && tokens_ok {
                granted = room;
                count = self.noted(
                    self.store
                        .lease_rate(&key.id, minute, room, limits.rpm, limits.tpm)
                        .await,
                )?;
            }
        }
        if !count.admitted {
            granted = 0;
        }
        let mut leases = lock(&self.leases);
        let e = leases.entry(key.id.clone()).or_default();
        let r = match &mut e.rate {
            Some(r) if r.minute == minute => r,
            slot => slot.insert(RateLease {
                minute,
                avail: 0,
                requests: 0,
                tokens: 0,
                last_grant: 0,
            }),
        };
        r.avail += granted;
        r.requests = r.requests.max(count.requests);
        r.tokens = r.tokens.max(count.tokens);
        if granted > 0 {
            r.last_grant = granted;
        }
        Ok(())
    }

    fn degrade(mut gate: Gate, policy: KeyPolicy) -> Result<Gate, Refusal> {
        if policy.fail_open {
            gate.degraded = true;
            Ok(gate)
        } else {
            Err(Refusal::Unavailable)
        }
    }

    fn new_reservation(key: &VirtualKey, gate: &Gate) -> Reservation {
        Reservation {
            key_id: key.id.clone(),
            team: key.team.clone(),
            period: None,
            reserved_nusd: 0,
            local_nusd: 0,
            minute: gate.minute,
            lease: 0,
        }
    }

    /// The reservation from memory alone: `None` when this instance's lease of the key's
    /// budget has too little left and the store must be asked ([`Keyring::reserve`] then).
    pub fn try_reserve(
        self: &Arc<Self>,
        key: &VirtualKey,
        gate: &Gate,
        amount_nusd: i64,
        policy: KeyPolicy,
    ) -> Option<Result<Reservation, Refusal>> {
        let mut r = Self::new_reservation(key, gate);
        let Some(budget) = key.budget else {
            return Some(Ok(r));
        };
        let period = budget.period.key_at(gate.at);
        let budget_nusd = to_nano(budget.usd);
        let amount = amount_nusd.max(0);
        r.period = Some(period.clone());
        if gate.degraded || !self.store_ok() {
            return Some(self.reserve_outage(r, amount, policy));
        }
        let mut leases = lock(&self.leases);
        let l = leases.get_mut(&key.id)?.budget.as_mut()?;
        if l.period != period || l.budget_nusd != budget_nusd || l.held - l.in_use < amount {
            return None;
        }
        l.in_use += amount;
        l.last_used = std::time::Instant::now();
        l.last_amount = amount;
        r.reserved_nusd = amount;
        r.lease = l.id;
        let low = l.held - l.in_use < amount.saturating_mul(BUDGET_LEASE_REQUESTS / 2);
        drop(leases);
        if low {
            self.in_background(key, move |me, key| async move {
                let _ = me
                    .refill_budget(&key, &period, budget_nusd, amount, false)
                    .await;
            });
        }
        Some(Ok(r))
    }

    /// Holds `amount_nusd` of the key's budget for this request (nothing to hold without a
    /// budget): from this instance's lease, topped up from the store when it runs short.
    /// Refused when the budget cannot take it.
    pub async fn reserve(
        self: &Arc<Self>,
        key: &VirtualKey,
        gate: &Gate,
        amount_nusd: i64,
        policy: KeyPolicy,
    ) -> Result<Reservation, Refusal> {
        if let Some(r) = self.try_reserve(key, gate, amount_nusd, policy) {
            return r;
        }
        let mut r = Self::new_reservation(key, gate);
        let Some(budget) = key.budget else {
            return Ok(r);
        };
        let period = budget.period.key_at(gate.at);
        let budget_nusd = to_nano(budget.usd);
        let amount = amount_nusd.max(0);
        r.period = Some(period.clone());
        for _ in 0..3 {
            match self
                .refill_budget(key, &period, budget_nusd, amount, true)
                .await
            {
                Ok(Refill::Taken(lease)) => {
                    r.reserved_nusd = amount;
                    r.lease = lease;
                    return Ok(r);
                }
                Ok(Refill::Raced) => continue,
                Ok(Refill::Refused | Refill::Skipped) => break,
                Err(_) => return self.reserve_outage(r, amount, policy),
            }
        }
        let count = self
            .store
            .budget_count(&key.id, &period)
            .await
            .unwrap_or_default();
        Err(Refusal::BudgetExceeded { count, budget_nusd })
    }

    /// Fail open: within the key's allowance on this instance; fail closed: refused.
    fn reserve_outage(
        &self,
        mut r: Reservation,
        amount: i64,
        policy: KeyPolicy,
    ) -> Result<Reservation, Refusal> {
        if !policy.fail_open {
            return Err(Refusal::Unavailable);
        }
        let mut outage = lock(&self.outage);
        let used = outage.entry(r.key_id.clone()).or_insert(0);
        if *used + amount > policy.allowance_nusd {
            return Err(Refusal::Unavailable);
        }
        *used += amount;
        r.local_nusd = amount;
        Ok(r)
    }

    /// Tops up this instance's lease of the key's budget with one conditional UPDATE on the
    /// store's counter: a slice of what is left (at most 1/8 of it, at most 32 × the
    /// request's estimate, at least what the request lacks). `wait`: the caller's `amount` is
    /// taken from the lease when it fits (after waiting for a refill in progress); else a
    /// background top-up, skipped if one is in progress or the budget is near its end.
    async fn refill_budget(
        self: &Arc<Self>,
        key: &VirtualKey,
        period: &str,
        budget_nusd: i64,
        amount: i64,
        wait: bool,
    ) -> Result<Refill, StoreError> {
        let refill = self.refill_lock(&key.id);
        let _guard = if wait {
            refill.lock().await
        } else {
            match refill.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(Refill::Skipped),
            }
        };
        let (avail, left) = {
            let mut leases = lock(&self.leases);
            let e = leases.entry(key.id.clone()).or_default();
            let fresh = !e
                .budget
                .as_ref()
                .is_some_and(|l| l.period == period && l.budget_nusd == budget_nusd);
            if fresh {
                // A new period or a new budget: what the old lease holds unused goes back (its
                // requests in flight release their own parts), and a new lease starts.
                if let Some(old) = e.budget.take() {
                    let unused = old.held - old.in_use;
                    if unused > 0 {
                        self.release(&key.id, &old.period, unused);
                    }
                }
                e.budget = Some(BudgetLease {
                    id: self.next_lease.fetch_add(1, Ordering::Relaxed),
                    period: period.to_string(),
                    budget_nusd,
                    held: 0,
                    in_use: 0,
                    left_on_store: None,
                    last_used: std::time::Instant::now(),
                    last_amount: amount,
                });
            }
            let Some(l) = e.budget.as_mut() else {
                return Ok(Refill::Skipped);
            };
            if wait && l.held - l.in_use >= amount {
                l.in_use += amount;
                l.last_used = std::time::Instant::now();
                l.last_amount = amount;
                return Ok(Refill::Taken(l.id));
            }
            (l.held - l.in_use, l.left_on_store)
        };
        let need = if wait { (amount - avail).max(0) } else { 0 };
        // Until the store has said what is left, only what the request lacks (the top-up
        // that follows sizes the lease).
        let slice = left.map_or(0, |left| {
            amount
                .saturating_mul(BUDGET_LEASE_REQUESTS)
                .min(left / BUDGET_LEASE_FRACTION)
        });
        let want = need.max(slice);
        if !wait && want < amount.max(1) {
            return Ok(Refill::Skipped);
        }
        let mut granted = want;
        let mut count = self.noted(
            self.store
                .reserve_budget(&key.id, period, want, budget_nusd)
                .await,
        )?;
        if count.is_none() && wait && want > need {
            granted = need;
            count = self.noted(
                self.store
                    .reserve_budget(&key.id, period, need, budget_nusd)
                    .await,
            )?;
        }
        let mut leases = lock(&self.leases);
        let lease = leases
            .get_mut(&key.id)
            .and_then(|e| e.budget.as_mut())
            .filter(|l| l.period == period && l.budget_nusd == budget_nusd);
        let Some(l) = lease else {
            // The lease was replaced meanwhile: give back what was just taken.
            if count.is_some() && granted > 0 {
                self.release(&key.id, period, granted);
            }
            return Ok(Refill::Skipped);
        };
        match count {
            Some(c) => {
                l.held += granted;
                l.left_on_store = Some(budget_nusd - c.spent_nusd - c.reserved_nusd);
            }
            None => l.left_on_store = Some(0),
        }
        if wait {
            if l.held - l.in_use >= amount {
                l.in_use += amount;
                l.last_used = std::time::Instant::now();
                l.last_amount = amount;
                return Ok(Refill::Taken(l.id));
            }
            return Ok(if count.is_some() {
                Refill::Raced
            } else {
                Refill::Refused
            });
        }
        Ok(Refill::Skipped)
    }

    /// Gives `amount` of a lease back to the store's counter (through the settlement writer).
    fn release(&self, key_id: &str, period: &str, amount: i64) {
        self.queue(Settlement {
            key_id: key_id.to_string(),
            team: None,
            period: Some(period.to_string()),
            reserved_nusd: amount,
            cost_nusd: 0,
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            minute: minute_of(Utc::now()).0,
            at: Utc::now(),
        });
    }

    fn queue(&self, s: Settlement) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.settle_tx.send(s).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("settlement writer stopped; a request's spend is not recorded");
        }
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
        let tokens = charge.input_tokens.saturating_add(charge.output_tokens);
        if r.lease != 0 || tokens > 0 {
            let mut leases = lock(&self.leases);
            if let Some(e) = leases.get_mut(&r.key_id) {
                if let Some(l) = e.budget.as_mut().filter(|l| l.id == r.lease) {
                    // The request's part leaves the lease: the settlement releases it on the
                    // store.
                    l.held -= r.reserved_nusd;
                    l.in_use -= r.reserved_nusd;
                    l.last_used = std::time::Instant::now();
                }
                if let Some(w) = e.rate.as_mut().filter(|w| w.minute == r.minute) {
                    w.tokens = w.tokens.saturating_add(tokens);
                }
            }
        }
        self.queue(Settlement {
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
        });
    }

    /// Gives every unused lease back to the store and waits (at most `within`) until every
    /// settlement is written: at shutdown.
    pub async fn shutdown(&self, within: Duration) {
        self.return_leases(Duration::ZERO);
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.pending() > 0 {
            tracing::warn!(
                settlements = self.pending(),
                "key spend not written at shutdown"
            );
        }
    }

    /// Returns budget leases no request holds and none has used for `idle`; forgets rate
    /// leases of past minutes.
    fn return_leases(&self, idle: Duration) {
        let (minute, _) = minute_of(Utc::now());
        let mut leases = lock(&self.leases);
        for (key_id, e) in leases.iter_mut() {
            if let Some(l) = e.budget.as_mut() {
                if l.in_use == 0 && l.held > 0 && l.last_used.elapsed() >= idle {
                    self.release(key_id, &l.period, l.held);
                    l.held = 0;
                    // What is left is no longer known once others may take it.
                    l.left_on_store = None;
                }
            }
            if e.rate.is_some_and(|r| r.minute < minute) {
                e.rate = None;
            }
        }
    }

    /// The heartbeat (is the store answering? a request with a limited key is served from
    /// memory, so this is how it learns the store is gone) and the return of idle leases.
    /// Pings only once a key has been used on this instance (or to learn the store is back):
    /// without leases every request with a limited key asks the store itself.
    async fn keep(&self) {
        loop {
            tokio::time::sleep(KEEP_EVERY).await;
            if !self.store_ok() || !lock(&self.leases).is_empty() {
                let ping = match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Db(sqlx::Error::PoolTimedOut)),
                };
                let _ = self.noted(ping);
            }
            self.return_leases(LEASE_IDLE);
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
            // One id for the batch and its retries: a retry of a batch whose commit did happen
            // (its acknowledgement lost with the connection) is not charged twice.
            let batch_id = uuid::Uuid::now_v7().to_string();
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.noted(self.store.settle_once(&batch_id, &batch).await) {
                    Ok(_) => break,
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
                        r = l.try_recv() => {
                            if let Ok(Some(_)) = r {
                                while l.next_buffered().is_some() {}
                            } else {
                                // The server closed the connection (it is stopping, or gone):
                                // the quickest sign the store is away, before any ping times
                                // out. Requests with limited keys stop spending leases now.
                                let e = match r {
                                    Err(e) => StoreError::Db(e),
                                    Ok(_) => StoreError::Db(sqlx::Error::Io(std::io::Error::new(
                                        std::io::ErrorKind::ConnectionAborted,
                                        "the key listener's connection was closed",
                                    ))),
                                };
                                tracing::warn!("key listener: {e}");
                                let _ = self.noted::<()>(Err(e));
                                listener = None;
                                tokio::time::sleep(Duration::from_millis(250)).await;
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
            if let Err(e) = self.noted(self.refresh().await) {
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
