//! Server-sent events, as LLM providers stream them: split a byte stream into whole events,
//! find the usage an OpenAI stream reports, and drop the usage-only chunk when the client did
//! not ask for it.
//!
//! Events are forwarded as soon as they are complete, byte for byte as the upstream sent them;
//! only a trailing partial event waits for the next chunk. The splitter bounds how much it
//! holds back ([`MAX_EVENT_BYTES`]) so a stream without separators cannot grow memory.

use bytes::{Bytes, BytesMut};

use crate::error::ApiFormat;
use crate::translate::{AnthropicToOpenAiStream, OpenAiToAnthropicStream, TokenUsage};

/// An event larger than this is passed on unparsed rather than buffered further.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Token counts as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    /// Reads OpenAI's `usage` object (`prompt_tokens`, `completion_tokens`).
    pub fn from_openai(v: &serde_json::Value) -> Option<Self> {
        let u = v.get("usage")?;
        if u.is_null() {
            return None;
        }
        Some(Self {
            input_tokens: u.get("prompt_tokens").and_then(|t| t.as_u64()).unwrap_or(0),
            output_tokens: u
                .get("completion_tokens")
                .and_then(|t| t.as_u64())
                .unwrap_or(0),
        })
    }

    /// Reads Anthropic's `usage` object (`input_tokens` plus cache reads and writes,
    /// `output_tokens`) from a message.
    pub fn from_anthropic(v: &serde_json::Value) -> Option<Self> {
        let u = v.get("usage").filter(|u| u.is_object())?;
        let n = |k: &str| u.get(k).and_then(|t| t.as_u64()).unwrap_or(0);
        Some(Self {
            input_tokens: n("input_tokens")
                + n("cache_read_input_tokens")
                + n("cache_creation_input_tokens"),
            output_tokens: n("output_tokens"),
        })
    }

    /// Reads the usage of a whole (non-streamed) response body in `format`.
    pub fn from_body(format: ApiFormat, v: &serde_json::Value) -> Option<Self> {
        match format {
            ApiFormat::OpenAi => Self::from_openai(v),
            ApiFormat::Anthropic => Self::from_anthropic(v),
        }
    }
}

impl From<TokenUsage> for Usage {
    fn from(u: TokenUsage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// What the filter does with each event.
#[derive(Debug)]
enum Mode {
    /// OpenAI upstream, OpenAI client: forward, capture usage, maybe drop the usage chunk.
    OpenAi { keep_usage_chunk: bool },
    /// Anthropic upstream, Anthropic client: forward, capture usage from `message_start` and
    /// `message_delta`.
    Anthropic,
    /// OpenAI upstream, Anthropic client.
    ToAnthropic(OpenAiToAnthropicStream),
    /// Anthropic upstream, OpenAI client.
    ToOpenAi(AnthropicToOpenAiStream),
}

/// Splits an SSE byte stream into events and filters them.
#[derive(Debug)]
pub struct SseFilter {
    pending: BytesMut,
    /// How much of `pending` is known to hold no event separator, so each byte is scanned
    /// about once however small the chunks (a separator spans at most 3 bytes: the scan
    /// resumes 2 bytes before this).
    scanned: usize,
    mode: Mode,
    pub usage: Option<Usage>,
    /// Saw `data: [DONE]`.
    pub done: bool,
    /// Saw an event whose JSON carries an `error` object.
    pub saw_error: bool,
}

impl SseFilter {
    /// An OpenAI stream to an OpenAI client; `keep_usage_chunk`: forward the usage-only chunk
    /// (the client set `stream_options.include_usage`).
    pub fn new(keep_usage_chunk: bool) -> Self {
        Self::with_mode(Mode::OpenAi { keep_usage_chunk })
    }

    /// A stream from an upstream speaking `upstream` to a client speaking `client`,
    /// translated when they differ.
    pub fn between(upstream: ApiFormat, client: ApiFormat, include_usage: bool) -> Self {
        Self::with_mode(match (upstream, client) {
            (ApiFormat::OpenAi, ApiFormat::OpenAi) => Mode::OpenAi {
                keep_usage_chunk: include_usage,
            },
            (ApiFormat::Anthropic, ApiFormat::Anthropic) => Mode::Anthropic,
            (ApiFormat::OpenAi, ApiFormat::Anthropic) => {
                Mode::ToAnthropic(OpenAiToAnthropicStream::new())
            }
            (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
                Mode::ToOpenAi(AnthropicToOpenAiStream::new(include_usage))
            }
        })
    }

    fn with_mode(mode: Mode) -> Self {
        Self {
            pending: BytesMut::new(),
            scanned: 0,
            mode,
            usage: None,
            done: false,
            saw_error: false,
        }
    }

    fn translating(&self) -> bool {
        matches!(self.mode, Mode::ToAnthropic(_) | Mode::ToOpenAi(_))
    }

    /// Feeds a chunk from upstream; returns the bytes to send to the client now (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end_from(&self.pending, self.scanned.saturating_sub(2)) {
            let event = self.pending.split_to(end);
            self.scanned = 0;
            self.event(&event, &mut out);
        }
        self.scanned = self.pending.len();
        if self.pending.len() > MAX_EVENT_BYTES {
            // Not SSE as we know it: pass it on rather than hold it (or drop it, when it would
            // have to be translated).
            self.scanned = 0;
            let rest = self.pending.split();
            if !self.translating() {
                out.extend_from_slice(&rest);
            }
        }
        out.freeze()
    }

    /// The stream ended: whatever is left (an unterminated last event) goes to the client, and
    /// a translated stream is closed as its format wants.
    pub fn finish(&mut self) -> Bytes {
        self.scanned = 0;
        let rest = self.pending.split();
        let mut out = BytesMut::new();
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        match &mut self.mode {
            Mode::ToAnthropic(t) => {
                out.extend_from_slice(&t.finish());
                self.usage = t.usage().map(Usage::from);
            }
            Mode::ToOpenAi(t) => {
                out.extend_from_slice(&t.finish());
                self.usage = t.usage().map(Usage::from);
            }
            Mode::OpenAi { .. } | Mode::Anthropic => {}
        }
        out.freeze()
    }

    /// An error event in the client's format, for a stream that must end early.
    pub fn error_event(&self, message: &str, code: &str) -> Bytes {
        match &self.mode {
            Mode::OpenAi { .. } | Mode::ToOpenAi(_) => openai_error_event(message, code),
            Mode::Anthropic | Mode::ToAnthropic(_) => Bytes::from(
                crate::translate::stream::anthropic_error_event(message, "api_error"),
            ),
        }
    }

    /// Handles one whole event: forwards, drops or translates it into `out`.
    fn event(&mut self, event: &[u8], out: &mut BytesMut) {
        match &mut self.mode {
            Mode::OpenAi { .. } => {
                if self.keep(event) {
                    out.extend_from_slice(event);
                }
            }
            Mode::Anthropic => {
                self.anthropic_event(event);
                out.extend_from_slice(event);
            }
            Mode::ToAnthropic(t) => {
                if let Some(data) = event_data(event) {
                    if data.trim_ascii() == b"[DONE]" {
                        self.done = true;
                    }
                    out.extend_from_slice(&t.event(&data));
                    self.usage = t.usage().map(Usage::from);
                    self.saw_error |= t.errored();
                }
            }
            Mode::ToOpenAi(t) => {
                if let Some(data) = event_data(event) {
                    let translated = t.event(&data);
                    if translated.ends_with(b"data: [DONE]\n\n") {
                        self.done = true;
                    }
                    out.extend_from_slice(&translated);
                    self.usage = t.usage().map(Usage::from);
                    self.saw_error |= t.errored();
                }
            }
        }
    }

    /// Captures usage from an Anthropic event.
    fn anthropic_event(&mut self, event: &[u8]) {
        let Some(data) = event_data(event) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return;
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("message_start") => {
                if let Some(m) = v.get("message") {
                    self.usage = Usage::from_anthropic(m).or(self.usage);
                }
            }
            Some("message_delta") => {
                let mut u = self.usage.unwrap_or_default();
                if let Some(d) = Usage::from_anthropic(&v) {
                    u.output_tokens = d.output_tokens;
                    if d.input_tokens > 0 {
                        u.input_tokens = d.input_tokens;
                    }
                }
                self.usage = Some(u);
            }
            Some("message_stop") => self.done = true,
            Some("error") => self.saw_error = true,
            _ => {}
        }
    }

    /// Inspects one whole event (separator included) and decides whether the client gets it.
    fn keep(&mut self, event: &[u8]) -> bool {
        let Some(data) = event_data(event) else {
            return true; // comments, `event:` lines without data, keep-alives
        };
        if data.trim_ascii() == b"[DONE]" {
            self.done = true;
            return true;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return true;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            self.saw_error = true;
        }
        if let Some(u) = Usage::from_openai(&v) {
            self.usage = Some(u);
            let usage_only = v
                .get("choices")
                .and_then(|c| c.as_array())
                .is_none_or(|c| c.is_empty());
            let keep_usage_chunk = match self.mode {
                Mode::OpenAi { keep_usage_chunk } => keep_usage_chunk,
                _ => true,
            };
            if usage_only && !keep_usage_chunk {
                return false;
            }
        }
        true
    }
}

/// Index just past the first event separator (a blank line: `\n\n`, `\r\n\r\n` or `\r\r`)
/// that starts at `from` or later.
fn event_end_from(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let next = buf.get(i + 1).copied();
        match buf[i] {
            b'\n' if next == Some(b'\n') => return Some(i + 2),
            b'\n' if next == Some(b'\r') && buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            b'\r' if next == Some(b'\r') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The event's data: its `data:` lines joined by `\n` (SSE's rule), or `None` if it has none.
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let d = data.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(rest);
        }
    }
    data
}

/// An SSE event carrying an error in OpenAI's shape, for a stream that must end early.
pub fn openai_error_event(message: &str, code: &str) -> Bytes {
    let v = serde_json::json!({
        "error": { "message": message, "type": "api_error", "param": null, "code": code }
    });
    Bytes::from(format!("data: {v}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE_CHUNK: &str =
        "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";
    const TEXT_CHUNK: &str =
        "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";

    #[test]
    fn splits_across_chunk_boundaries() {
        let mut f = SseFilter::new(true);
        let all = format!("{TEXT_CHUNK}{USAGE_CHUNK}data: [DONE]\n\n");
        let mut out = Vec::new();
        for piece in all.as_bytes().chunks(5) {
            out.extend_from_slice(&f.push(piece));
        }
        out.extend_from_slice(&f.finish());
        assert_eq!(out, all.as_bytes());
        assert_eq!(
            f.usage,
            Some(Usage {
                input_tokens: 7,
                output_tokens: 3
            })
        );
        assert!(f.done);
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        // Every separator form, split at every position by chunks of every small size.
        let all = format!(
            "{TEXT_CHUNK}event: x\r\ndata: {{\"a\":1}}\r\n\r\ndata: {{\"b\":2}}\r\r{USAGE_CHUNK}data: [DONE]\n\n"
        );
        let mut whole = SseFilter::new(true);
        let expected = [whole.push(all.as_bytes()), whole.finish()].concat();
        assert_eq!(expected, all.as_bytes());
        for size in 1..=9 {
            let mut f = SseFilter::new(true);
            let mut out = Vec::new();
            let mut events = 0;
            for piece in all.as_bytes().chunks(size) {
                let b = f.push(piece);
                events += b.windows(2).filter(|w| w == b"\n\n").count();
                out.extend_from_slice(&b);
            }
            // Each event goes out as soon as its separator is in, not at the end.
            assert!(events >= 3, "chunks of {size}: {events}");
            out.extend_from_slice(&f.finish());
            assert_eq!(out, expected, "chunks of {size}");
            assert!(f.done && f.usage.is_some(), "chunks of {size}");
        }
    }

    #[test]
    fn drops_usage_chunk_unless_asked() {
        let mut f = SseFilter::new(false);
        let all = format!("{TEXT_CHUNK}{USAGE_CHUNK}data: [DONE]\n\n");
        let out = f.push(all.as_bytes());
        assert_eq!(out, format!("{TEXT_CHUNK}data: [DONE]\n\n").as_bytes());
        assert_eq!(f.usage.unwrap().output_tokens, 3);
    }

    #[test]
    fn anthropic_usage_captured_and_passed_through() {
        let all = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut f = SseFilter::between(ApiFormat::Anthropic, ApiFormat::Anthropic, false);
        let mut out = Vec::new();
        for piece in all.as_bytes().chunks(7) {
            out.extend_from_slice(&f.push(piece));
        }
        out.extend_from_slice(&f.finish());
        assert_eq!(out, all.as_bytes());
        assert_eq!(
            f.usage,
            Some(Usage {
                input_tokens: 11,
                output_tokens: 6
            })
        );
        assert!(f.done);
    }

    #[test]
    fn translates_between_formats() {
        let mut f = SseFilter::between(ApiFormat::OpenAi, ApiFormat::Anthropic, false);
        let all = format!("{TEXT_CHUNK}{USAGE_CHUNK}data: [DONE]\n\n");
        let mut out = f.push(all.as_bytes()).to_vec();
        out.extend_from_slice(&f.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("event: message_start\n"), "{text}");
        assert!(text.contains("\"text_delta\""), "{text}");
        assert!(
            text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            "{text}"
        );
        assert_eq!(f.usage.unwrap().input_tokens, 7);
        assert!(f.done);
    }

    #[test]
    fn crlf_and_multiline_data() {
        let ev = b"event: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n";
        assert_eq!(event_end_from(ev, 0), Some(ev.len()));
        assert_eq!(event_data(ev).unwrap(), b"{\"a\":\n1}");
    }

    #[test]
    fn holds_partial_event_and_bounds_it() {
        let mut f = SseFilter::new(true);
        assert!(f.push(b"data: {\"par").is_empty());
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(f.push(&big).len(), MAX_EVENT_BYTES + 1 + 11);
    }
}
