//! The proxy's own answers: JSON bodies and errors in the client's format.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::{ProxyState, RequestCtx};
use crate::error::ApiError;

pub(crate) const DECISION_HEADER: &str = "x-dualrouter-decision-id";
pub(crate) const MODEL_HEADER: &str = "x-dualrouter-model";
pub(crate) const ROUTE_HEADER: &str = "x-dualrouter-route";

/// Writes a whole JSON response.
pub(crate) async fn json(
    session: &mut Session,
    status: http::StatusCode,
    value: &serde_json::Value,
    extra: &[(&str, String)],
) -> Result<http::StatusCode, ApiError> {
    let body = Bytes::from(value.to_string());
    write_whole(session, status, body, extra)
        .await
        .map_err(|e| ApiError::Internal(format!("writing the response: {}", e.etype().as_str())))?;
    Ok(status)
}

/// Writes a whole response body of `content_type` as it is.
pub(crate) async fn raw(
    session: &mut Session,
    status: http::StatusCode,
    body: Bytes,
    content_type: &str,
    extra: &[(&str, String)],
) -> Result<http::StatusCode, ApiError> {
    write_whole_as(session, status, body, content_type, extra)
        .await
        .map_err(|e| ApiError::Internal(format!("writing the response: {}", e.etype().as_str())))?;
    Ok(status)
}

async fn write_whole(
    session: &mut Session,
    status: http::StatusCode,
    body: Bytes,
    extra: &[(&str, String)],
) -> pingora::Result<()> {
    write_whole_as(session, status, body, "application/json", extra).await
}

async fn write_whole_as(
    session: &mut Session,
    status: http::StatusCode,
    body: Bytes,
    content_type: &str,
    extra: &[(&str, String)],
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    for (k, v) in extra {
        resp.insert_header(k.to_string(), v.as_str())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Logs an overload refusal at most once every 10 s, with how many there were since.
pub(crate) fn overload_warning(err: &ApiError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    static LAST_S: AtomicU64 = AtomicU64::new(0);
    REFUSED.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_S.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_S
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let n = REFUSED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            kind = err.kind(),
            refused = n,
            "{err} ({n} refused since the last such line; dualrouter_errors_total{{kind=\"overloaded\"}} counts them all)"
        );
    }
}

/// Answers with `err` in the client's format and counts it. If the request body may not have
/// been read whole, the connection is closed afterwards rather than reused.
pub(crate) async fn error(
    state: &ProxyState,
    session: &mut Session,
    ctx: &RequestCtx,
    err: &ApiError,
) -> http::StatusCode {
    let status = err.status();
    state.metrics.errors.with_label_values(&[err.kind()]).inc();
    if matches!(err, ApiError::Overloaded { .. }) {
        // Under overload a line per refusal would add a flood of writes to the load; the
        // metric counts each one, the log says so once in a while.
        overload_warning(err);
    } else if status.is_server_error() && !matches!(err, ApiError::NotReady(_)) {
        tracing::warn!(decision_id = %ctx.decision_id, kind = err.kind(), "{err}");
    } else {
        tracing::debug!(decision_id = %ctx.decision_id, kind = err.kind(), "{err}");
    }
    let body_pending = !session.is_body_done();
    if body_pending {
        session.set_keepalive(None);
    }
    if session.response_written().is_some() {
        // Headers already went out (a failure mid-response): nothing more can be said.
        session.set_keepalive(None);
        return status;
    }
    let mut extra = vec![(DECISION_HEADER, ctx.decision_id.to_string())];
    if let Some(m) = &ctx.model {
        extra.push((MODEL_HEADER, m.clone()));
    }
    if let Some(r) = &ctx.route {
        extra.push((ROUTE_HEADER, r.clone()));
    }
    if let Some(s) = err.retry_after_s() {
        extra.push(("retry-after", s.to_string()));
    }
    extra.extend(err.headers());
    if let Err(e) = write_whole(session, status, err.body(ctx.format), &extra).await {
        tracing::debug!("could not write the error response: {}", e.etype().as_str());
        session.set_keepalive(None);
    } else if body_pending && !matches!(err, ApiError::ClientTimeout) {
        linger(session, state.config.limits.max_body_bytes).await;
    }
    status
}

/// After answering before the request body was read (413, 401, …), reads and discards what the
/// client is still sending for a short while, so it finishes its write and sees the answer
/// instead of a reset (nginx's "lingering close"). Bounded in time and bytes.
async fn linger(session: &mut Session, max_body_bytes: usize) {
    const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
    let budget = max_body_bytes.saturating_mul(2).max(1 << 20);
    let drain = async {
        let mut seen = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            seen += chunk.len();
            if seen > budget {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
