//! The mock's accept loop: one hyper HTTP/1.1 connection per accepted socket (`TCP_NODELAY`,
//! optionally TLS), each request carrying a [`Conn`] with which a behaviour can reset the
//! connection (`reset`, `reset:N`: a TCP RST instead of an orderly close).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Ctl {
    /// Close with a reset (SO_LINGER 0) rather than a FIN.
    rst: AtomicBool,
    /// Wakes the connection's task, which then drops the connection.
    gone: tokio::sync::Notify,
}

/// The connection a request came on (a request extension).
#[derive(Clone)]
pub(crate) struct Conn(Arc<Ctl>);

impl Conn {
    /// Resets the connection now: whatever the response was doing, the client sees a TCP RST.
    pub(crate) fn reset(&self) {
        self.0.rst.store(true, Ordering::SeqCst);
        self.0.gone.notify_one();
    }
}

/// The socket, closed with a reset when its connection asked for one.
struct Io {
    tcp: TcpStream,
    ctl: Arc<Ctl>,
}

impl Drop for Io {
    fn drop(&mut self) {
        if self.ctl.rst.load(Ordering::SeqCst) {
            // SO_LINGER 0: the close that follows (the stream's own drop) sends RST, not FIN.
            let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Accepts connections forever, serving `app` on each (over TLS with `tls`).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors and the like: wait for connections to close.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let ctl = Arc::new(Ctl::default());
            let io = Io {
                tcp,
                ctl: ctl.clone(),
            };
            match tls {
                None => serve_conn(io, app, ctl).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(io).await {
                        serve_conn(stream, app, ctl).await;
                    }
                }
            }
        });
    }
}

async fn serve_conn<I>(io: I, app: Router, ctl: Arc<Ctl>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Conn(ctl.clone());
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(conn.clone());
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::select! {
        _ = served => {}
        // Dropping the connection drops the socket (`Io`), which resets it.
        _ = ctl.gone.notified() => {}
    }
}
