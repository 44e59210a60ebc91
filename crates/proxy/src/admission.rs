//! Admission of client connections, ahead of Pingora's HTTP machinery.
//!
//! Under a load the proxy cannot serve, the excess must be refused while refusing is still
//! cheap. Checking only in the request path (`limits.max_in_flight` and a run-queue probe in
//! `admit`) was too late: the load runs of issue #11 showed that at twice the capacity the
//! excess piled up *before* a request header was parsed, as accepted connections whose tasks
//! waited for a worker (14,000 of them, 1.3 GB) and then in the kernel's accept queue, and
//! ended in connect failures and 30 s timeouts rather than in fast 503s. (The probe, a yield,
//! does not see that queue: tokio resumes a yielded task after a bounded number of others.)
//!
//! So every accepted connection passes [`Admission::check`] first:
//!
//! - `limits.max_connections` bounds the connections open at once, and with them the memory
//!   they hold. One more gets one answer, written here without parsing beyond the request line:
//!   503 `overloaded` with `Retry-After` in the format of the endpoint it asked for (the same
//!   [`ApiError`] the request path would answer with) and `Connection: close`. The proxy then
//!   reads until the client closes (at most `limits.refused_linger_ms`), so that the client
//!   closes first: closing first with unread bytes would send a reset that can destroy the
//!   answer in flight, and the side that closes first keeps the connection's TIME_WAIT.
//! - The time the connection waited between its accept and the first poll of its task is the
//!   workers' queueing delay; it is folded into [`Admission::saturated`], and while that stays
//!   over `limits.max_queue_ms`, `admit` refuses requests with 503 `overloaded` (on a connection
//!   that stays open: refusing is cheap, and the client reuses it rather than opening another).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ApiError, Format};
use dualrouter_core::config::Limits;
use dualrouter_core::metrics::Metrics;

/// How long an accept-wait sample stays relevant to [`Admission::saturated`].
const WAIT_MEMORY: Duration = Duration::from_secs(1);
/// The most of a refused request read to find its endpoint.
const REFUSED_READ_BYTES: usize = 4096;

/// The connection counters and the recent accept waits, shared by every connection.
pub struct Admission {
    open: Arc<AtomicUsize>,
    origin: Instant,
    /// Smoothed accept wait, µs.
    wait_us: AtomicU64,
    /// When the last sample was taken, ms after `origin`.
    sampled_ms: AtomicU64,
    /// Every sample, for operators (`dualrouter_queue_delay_seconds`).
    histogram: Option<prometheus::Histogram>,
}

/// A connection counted open (and in `dualrouter_connections_open`) for as long as this lives.
pub struct OpenConnection {
    count: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

/// The answer to a connection over `limits.max_connections`.
fn refusal(limits: &Limits) -> ApiError {
    ApiError::Overloaded {
        why: "limits.max_connections connections open",
        retry_after_s: limits.overload_retry_after_s,
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            open: Arc::default(),
            origin: Instant::now(),
            wait_us: AtomicU64::new(0),
            sampled_ms: AtomicU64::new(0),
            histogram: None,
        }
    }
}

impl Admission {
    /// Admission whose queueing delays are also observed in `histogram`.
    pub fn with_histogram(histogram: prometheus::Histogram) -> Self {
        Self {
            histogram: Some(histogram),
            ..Self::default()
        }
    }

    /// Counts a new connection open and says whether it is served (false: over
    /// `limits.max_connections`). `waited` is the time from its accept to now (the first poll of
    /// its task).
    pub fn check(
        &self,
        waited: Duration,
        limits: &Limits,
        gauge: &prometheus::IntGauge,
    ) -> (OpenConnection, bool) {
        let before = self.open.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        let open = OpenConnection {
            count: self.open.clone(),
            gauge: gauge.clone(),
        };
        self.sample(waited);
        (open, before < limits.max_connections)
    }

    /// Connections open now (refused ones included until they are closed).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Folds one queueing delay (an accept wait, or the time a readable request waited for
    /// its task to be polled) into the smoothed figure; a lost update under a race only drops
    /// a sample.
    pub fn sample(&self, waited: Duration) {
        if let Some(h) = &self.histogram {
            h.observe(waited.as_secs_f64());
        }
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let old = if self.fresh() {
            self.wait_us.load(Ordering::Relaxed)
        } else {
            0
        };
        // Weight 1/4 for the new sample: a few slow accepts in a row count, a lone one not.
        let smoothed = old - old / 4 + us / 4;
        self.wait_us.store(smoothed, Ordering::Relaxed);
        self.sampled_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the last sample is recent enough to count.
    fn fresh(&self) -> bool {
        self.now_ms()
            .saturating_sub(self.sampled_ms.load(Ordering::Relaxed))
            <= WAIT_MEMORY.as_millis() as u64
    }

    /// Whether new connections have recently been waiting longer than `max_queue` for a worker.
    pub fn saturated(&self, max_queue: Duration) -> bool {
        self.fresh() && Duration::from_micros(self.wait_us.load(Ordering::Relaxed)) > max_queue
    }
}

/// How long ago Pingora accepted this connection (0 if it cannot tell).
pub(crate) fn accept_wait(stream: &Stream) -> Duration {
    stream
        .get_timing_digest()
        .first()
        .and_then(|d| d.as_ref())
        .and_then(|d| SystemTime::now().duration_since(d.established_ts).ok())
        .unwrap_or_default()
}

/// The client format of a request from its first line: Anthropic's for `/v1/messages…`, the
/// Responses API's for `/v1/responses…` (OpenAI's error JSON either way), else chat's.
pub(crate) fn format_of(head: &[u8]) -> Format {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let _method = parts.next();
    let path = parts.next().unwrap_or(&[]);
    let path = path.split(|&b| b == b'?').next().unwrap_or(&[]);
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if path.starts_with(b"/v1/messages") || path.starts_with(b"/messages") {
        Format::Messages
    } else if path.starts_with(b"/v1/responses") || path.starts_with(b"/responses") {
        Format::Responses
    } else {
        Format::Chat
    }
}

/// The whole answer to a refused connection: status line, headers, JSON body.
pub(crate) fn refusal_response(err: &ApiError, format: Format) -> Vec<u8> {
    let status = err.status();
    let body = err.body(format);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(s) = err.retry_after_s() {
        out.push_str(&format!("retry-after: {s}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers a connection over `limits.max_connections` and closes it; never takes longer than
/// about three times `limits.refused_linger_ms`.
pub(crate) async fn refuse(mut stream: Stream, limits: &Limits, metrics: &Metrics) {
    let err = refusal(limits);
    metrics
        .connections_refused
        .with_label_values(&["max_connections"])
        .inc();
    metrics.errors.with_label_values(&[err.kind()]).inc();
    super::respond::overload_warning(&err);
    let linger = limits.refused_linger;
    // Read the request line (and whatever else is there at once) to answer in its format.
    let mut head = [0u8; REFUSED_READ_BYTES];
    let mut n = 0;
    let until = tokio::time::Instant::now() + linger;
    while n < head.len() && !head[..n].windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(until, stream.read(&mut head[n..])).await {
            Ok(Ok(k)) if k > 0 => n += k,
            _ => break,
        }
    }
    let answer = refusal_response(&err, format_of(&head[..n]));
    let written = tokio::time::timeout(linger, async {
        stream.write_all(&answer).await?;
        stream.flush().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    // Read (and drop) what the client still sends until it closes, which it does on
    // `Connection: close`; only a client that does not is closed from here, after the linger.
    let _ = tokio::time::timeout(linger, async {
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(k) if k > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_queue_ms: u64) -> Limits {
        Limits::from_raw(&dualrouter_core::config::raw::RawLimits {
            max_connections,
            max_queue_ms,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn caps_open_connections_and_counts_them_down() {
        let a = Admission::default();
        let g = prometheus::IntGauge::new("open", "open").unwrap();
        let l = limits(2, 200);
        let (c1, v1) = a.check(Duration::ZERO, &l, &g);
        let (c2, v2) = a.check(Duration::ZERO, &l, &g);
        let (c3, v3) = a.check(Duration::ZERO, &l, &g);
        assert_eq!((v1, v2, v3), (true, true, false));
        assert_eq!((a.open(), g.get()), (3, 3));
        drop((c3, c1));
        assert_eq!((a.open(), g.get()), (1, 1));
        let (_c4, v4) = a.check(Duration::ZERO, &l, &g);
        assert!(v4);
        drop(c2);
    }

    #[test]
    fn long_accept_waits_mark_the_workers_saturated() {
        let a = Admission::default();
        let g = prometheus::IntGauge::new("open", "open").unwrap();
        let l = limits(100, 200);
        let (_c, v) = a.check(Duration::from_millis(250), &l, &g);
        assert!(v, "a slow accept is served (its requests may be refused)");
        // One slow accept alone does not mark the proxy saturated; several in a row do.
        assert!(!a.saturated(l.max_queue));
        let mut held = Vec::new();
        for _ in 0..12 {
            held.push(a.check(Duration::from_millis(900), &l, &g).0);
        }
        assert!(a.saturated(l.max_queue));
        // Fast accepts bring it back.
        for _ in 0..12 {
            held.push(a.check(Duration::from_millis(1), &l, &g).0);
        }
        assert!(!a.saturated(l.max_queue));
    }

    #[test]
    fn answers_in_the_format_of_the_endpoint() {
        assert_eq!(
            format_of(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"),
            Format::Messages
        );
        assert_eq!(
            format_of(b"POST /messages/?beta=1 HTTP/1.1\r\n"),
            Format::Messages
        );
        assert_eq!(
            format_of(b"POST /v1/chat/completions HTTP/1.1\r\n"),
            Format::Chat
        );
        assert_eq!(format_of(b""), Format::Chat);
        assert_eq!(format_of(b"\xff\xfe garbage"), Format::Chat);

        let l = limits(1, 200);
        let r = refusal_response(&refusal(&l), Format::Messages);
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 1\r\n"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_connections"));
    }
}
