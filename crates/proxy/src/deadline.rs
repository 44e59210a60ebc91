//! `limits.client_header_ms`: a client must finish each request header within this long, from
//! the connection's start or from the end of the previous answer on a kept-alive connection.
//!
//! Pingora bounds each *read* of a request header (60 s on a new connection, none at all on a
//! kept-alive HTTP/1.1 one), not the whole header: a client dribbling one byte every few
//! seconds holds its connection and task forever. So every accepted connection is wrapped in
//! [`HeaderDeadline`], whose reads fail with `TimedOut` once the deadline passes while a
//! header is awaited; the proxy disarms it when a header is in ([`header_done`], the start of
//! `request_filter`) and re-arms it when its answer is done ([`await_next_header`]). An idle
//! kept-alive connection is thereby closed after `client_header_ms` too. The body has its own
//! bound (`limits.client_body_ms`, see `ingress::read_body`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::{HttpProxy, Session};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::admission::{self, Admission};
use super::Proxy;

/// A downstream connection whose reads fail once a request header is overdue.
///
/// While a header is awaited it also measures the workers' queueing delay: the time from the
/// wake-up that says the client's bytes are readable to the poll that reads them (its task
/// waited that long in the run queue). Each measure goes to [`Admission::sample`], which
/// `admit` consults to refuse requests while the workers are saturated.
pub(crate) struct HeaderDeadline {
    inner: Stream,
    /// Origin of the deadline's clock.
    origin: Instant,
    /// Nanoseconds after `origin` by which the awaited header must be in; 0: none awaited.
    due: AtomicU64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Stamps the time of the wake-up of a pending header read.
    stamp: Arc<WakeStamp>,
    admission: Option<Arc<Admission>>,
}

/// A waker that notes when it was woken, then wakes the task's own waker.
#[derive(Default)]
struct WakeStamp {
    /// When the pending read was woken; None: not since the last poll.
    woken: std::sync::Mutex<(Option<Instant>, Option<std::task::Waker>)>,
}

impl std::task::Wake for WakeStamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let waker = {
            let mut w = self.woken.lock().unwrap_or_else(|p| p.into_inner());
            w.0.get_or_insert_with(Instant::now);
            w.1.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl std::fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HeaderDeadline {
    /// A new connection: its first header is due within `limit`. Queueing delays go to
    /// `admission`, if given.
    pub(crate) fn new(inner: Stream, limit: Duration, admission: Option<Arc<Admission>>) -> Self {
        let s = Self {
            inner,
            origin: Instant::now(),
            due: AtomicU64::new(0),
            timer: None,
            stamp: Arc::default(),
            admission,
        };
        s.arm(limit);
        s
    }

    /// Reads from the client through the stamping waker, and reports the queueing delay of a
    /// read that had to wait to [`Admission::sample`].
    fn poll_inner_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Some(admission) = self.admission.clone() else {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        };
        let woken = {
            let mut w = self.stamp.woken.lock().unwrap_or_else(|p| p.into_inner());
            if !w.1.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
                w.1 = Some(cx.waker().clone());
            }
            w.0.take()
        };
        let waker = std::task::Waker::from(self.stamp.clone());
        let mut stamped = Context::from_waker(&waker);
        let r = Pin::new(&mut self.inner).poll_read(&mut stamped, buf);
        if let (Poll::Ready(Ok(())), Some(at)) = (&r, woken) {
            admission.sample(at.elapsed());
        }
        r
    }

    fn arm(&self, limit: Duration) {
        let at = self.origin.elapsed() + limit;
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.due.store(nanos, Ordering::Release);
    }

    fn disarm(&self) {
        self.due.store(0, Ordering::Release);
    }

    fn due(&self) -> Option<Instant> {
        match self.due.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n)),
        }
    }
}

fn wrapper(session: &Session) -> Option<&HeaderDeadline> {
    session
        .downstream_session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<HeaderDeadline>())
}

/// The request header is in: no deadline while the request is served.
pub(crate) fn header_done(session: &Session) {
    if let Some(w) = wrapper(session) {
        w.disarm();
    }
}

/// The answer is done: the next header on this connection is due within `limit`.
pub(crate) fn await_next_header(session: &Session, limit: Duration) {
    if let Some(w) = wrapper(session) {
        w.arm(limit);
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(due) = this.due() else {
            this.timer = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if Instant::now() >= due {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took longer than limits.client_header_ms to send a request header",
            )));
        }
        match this.poll_inner_stamped(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let deadline = tokio::time::Instant::from_std(due);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client took longer than limits.client_header_ms to send a request header",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

use std::future::Future;

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The proxy service's app: Pingora's HTTP proxy behind [`Admission`] (a refused connection
/// gets its 503 and is closed), each admitted connection wrapped in [`HeaderDeadline`] with the
/// live config's `limits.client_header_ms`.
pub struct GuardedProxy {
    pub inner: Arc<HttpProxy<Proxy>>,
    pub states: Arc<ArcSwap<crate::ProxyState>>,
    pub admission: Arc<Admission>,
    /// `server.drain_linger_ms`: how long idle keep-alive connections outlive the signal.
    pub drain_linger: Duration,
}

#[async_trait]
impl ServerApp for GuardedProxy {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (limits, metrics) = {
            let state = self.states.load_full();
            (state.config.limits, state.metrics.clone())
        };
        let waited = admission::accept_wait(&session);
        let (_open, admitted) = self
            .admission
            .check(waited, &limits, &metrics.connections_open);
        if !admitted {
            admission::refuse(session, &limits, &metrics).await;
            return None;
        }
        drop(metrics);
        let stream: Stream = Box::new(HeaderDeadline::new(
            session,
            limits.client_header,
            Some(self.admission.clone()),
        ));
        self.inner.process_new(stream, shutdown).await
    }

    /// Called once the listeners have stopped accepting. Pingora's own cleanup drops every
    /// connection waiting for its next request at once, which loses a request a client is
    /// writing on it at that instant. So it waits `drain_linger` first: meanwhile a request on
    /// such a connection is served with `Connection: close` (Pingora turns keep-alive off once
    /// shutdown has begun) and the client reconnects. The drain watcher in `server` exits as
    /// soon as no connection is left open.
    async fn cleanup(&self) {
        tokio::time::sleep(self.drain_linger).await;
        self.inner.cleanup().await
    }
}
