//! Small JSON helpers shared by the format modules.

use serde_json::Value;

pub(crate) fn get_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

pub(crate) fn get_u64(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An SSE event carrying `data` and, when given, its `event:` name.
pub(crate) fn sse(out: &mut Vec<u8>, name: Option<&str>, data: &Value) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// The message of an upstream error body in any format, or the body's text (its first 500
/// characters); and its `error.type` when it has one.
pub(crate) fn error_message(body: &[u8]) -> (String, Option<String>) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| get_str(e, "message"))
        .map(str::to_string)
        .or_else(|| err.and_then(Value::as_str).map(str::to_string))
        .or_else(|| {
            v.as_ref()
                .and_then(|v| get_str(v, "message"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let cut: String = text.trim().chars().take(500).collect();
            if cut.is_empty() {
                "the upstream returned an error".into()
            } else {
                cut
            }
        });
    let ty = err.and_then(|e| get_str(e, "type")).map(str::to_string);
    (message, ty)
}

/// OpenAI's `error.type` for an HTTP status.
pub(crate) fn openai_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 405 | 408 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// The text of a JSON value that should be a string (anything else as its JSON).
pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
