//! Server-sent events, as LLM providers stream them: split a byte stream into whole events,
//! find the usage an OpenAI stream reports, and drop the usage-only chunk when the client did
//! not ask for it.
//!
//! Events are forwarded as soon as they are complete, byte for byte as the upstream sent them;
//! only a trailing partial event waits for the next chunk. The splitter bounds how much it
//! holds back ([`MAX_EVENT_BYTES`]) so a stream without separators cannot grow memory.

use bytes::{Bytes, BytesMut};
use dualrouter_wire as wire;

use crate::error::Format;

/// An event larger than this is passed on unparsed rather than buffered further.
pub(crate) const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Token counts as the upstream reported them (cached input apart).
pub(crate) type Usage = wire::Usage;

/// Reads the usage of a whole (non-streamed) answer in `format`.
pub fn usage_of_body(format: Format, v: &serde_json::Value) -> Option<Usage> {
    wire::decode_response(format, v).ok().and_then(|r| r.usage)
}

/// What the filter does with each event.
#[derive(Debug)]
enum Mode {
    /// Chat upstream, chat client: forward, capture usage, maybe drop the usage chunk.
    Chat { keep_usage_chunk: bool },
    /// Messages or Responses upstream, client of the same format: forward byte for byte,
    /// reading usage (and the Responses' final object) on the way.
    Watch(Box<(wire::Decoder, wire::Collector)>),
    /// Upstream and client formats differ: every event translated.
    Translate(Box<wire::StreamTranslator>),
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
    /// The client's format.
    client: Format,
    pub usage: Option<Usage>,
    /// The upstream said the answer is complete (`[DONE]`, `message_stop`,
    /// `response.completed`).
    pub done: bool,
    /// Saw an event carrying an error.
    pub saw_error: bool,
    /// Keep a Responses client's final `response` object (it is to be stored).
    pub keep_final: bool,
    /// A Responses client: the `response` object its stream ended with (when `keep_final`).
    pub final_response: Option<serde_json::Value>,
    events: Vec<wire::Event>,
}

impl SseFilter {
    /// A chat stream to a chat client; `keep_usage_chunk`: forward the usage-only chunk (the
    /// client set `stream_options.include_usage`).
    pub fn new(keep_usage_chunk: bool) -> Self {
        Self::with_mode(Mode::Chat { keep_usage_chunk }, Format::Chat)
    }

    /// A stream from an upstream speaking `upstream` to a client speaking `client`,
    /// translated when they differ (`echo`: what the client's format needs of its request).
    pub fn between(upstream: Format, client: Format, echo: wire::Echo) -> Self {
        let mode = if upstream != client {
            Mode::Translate(Box::new(wire::StreamTranslator::new(
                upstream, client, echo,
            )))
        } else if client == Format::Chat {
            Mode::Chat {
                keep_usage_chunk: echo.include_usage,
            }
        } else {
            Mode::Watch(Box::new((
                wire::Decoder::new(upstream),
                wire::Collector::default(),
            )))
        };
        Self::with_mode(mode, client)
    }

    fn with_mode(mode: Mode, client: Format) -> Self {
        Self {
            pending: BytesMut::new(),
            scanned: 0,
            mode,
            client,
            usage: None,
            done: false,
            saw_error: false,
            keep_final: false,
            final_response: None,
            events: Vec::new(),
        }
    }

    fn translating(&self) -> bool {
        matches!(self.mode, Mode::Translate(_))
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
        if let Mode::Translate(t) = &mut self.mode {
            out.extend_from_slice(&t.finish());
            self.usage = t.usage();
            if self.keep_final && self.final_response.is_none() {
                self.final_response = t.final_response();
            }
        }
        out.freeze()
    }

    /// An error event in the client's format, for a stream that must end early.
    pub fn error_event(&mut self, message: &str, code: &str) -> Bytes {
        match &mut self.mode {
            Mode::Translate(t) => Bytes::from(t.fail(message, code)),
            Mode::Chat { .. } => openai_error_event(message, code),
            Mode::Watch(_) => {
                let mut out = Vec::new();
                match self.client {
                    Format::Responses => {
                        let id = self
                            .final_response
                            .as_ref()
                            .and_then(|r| r.get("id"))
                            .cloned()
                            .unwrap_or(serde_json::Value::Null);
                        let v = serde_json::json!({"type": "response.failed", "response": {
                            "id": id, "object": "response", "status": "failed",
                            "error": {"code": code, "message": message}}});
                        out.extend_from_slice(
                            format!("event: response.failed\ndata: {v}\n\n").as_bytes(),
                        );
                    }
                    _ => {
                        let v = serde_json::json!({"type": "error",
                            "error": {"type": "api_error", "message": message}});
                        out.extend_from_slice(format!("event: error\ndata: {v}\n\n").as_bytes());
                    }
                }
                Bytes::from(out)
            }
        }
    }

    /// Handles one whole event: forwards, drops or translates it into `out`.
    fn event(&mut self, event: &[u8], out: &mut BytesMut) {
        match &mut self.mode {
            Mode::Chat { .. } => {
                if self.keep(event) {
                    out.extend_from_slice(event);
                }
            }
            Mode::Watch(watch) => {
                let (decoder, collector) = &mut **watch;
                out.extend_from_slice(event);
                let Some(data) = event_data(event) else {
                    return;
                };
                self.events.clear();
                decoder.event(&data, &mut self.events);
                for e in &self.events {
                    collector.event(e);
                }
                self.usage = collector.response.usage;
                self.done |= collector.done;
                self.saw_error |= collector.errored;
                if self.keep_final && (collector.done || collector.errored) {
                    if let Some(r) = wire::final_response(&data) {
                        self.final_response = Some(r);
                    }
                }
            }
            Mode::Translate(t) => {
                if let Some(data) = event_data(event) {
                    out.extend_from_slice(&t.event(&data));
                    self.usage = t.usage();
                    self.done |= t.collected().done;
                    self.saw_error |= t.collected().errored;
                    if self.keep_final && t.ended() && self.final_response.is_none() {
                        self.final_response = t.final_response();
                    }
                }
            }
        }
    }

    /// Inspects one whole chat event (separator included) and decides whether the client gets
    /// it.
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
        if let Some(u) = v.get("usage").and_then(wire::decode_chat_usage) {
            self.usage = Some(u);
            let usage_only = v
                .get("choices")
                .and_then(|c| c.as_array())
                .is_none_or(|c| c.is_empty());
            let keep_usage_chunk = match self.mode {
                Mode::Chat { keep_usage_chunk } => keep_usage_chunk,
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
pub(crate) fn openai_error_event(message: &str, code: &str) -> Bytes {
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
                input: 7,
                output: 3,
                ..Default::default()
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
        assert_eq!(f.usage.unwrap().output, 3);
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
        let mut f = SseFilter::between(Format::Messages, Format::Messages, Default::default());
        let mut out = Vec::new();
        for piece in all.as_bytes().chunks(7) {
            out.extend_from_slice(&f.push(piece));
        }
        out.extend_from_slice(&f.finish());
        assert_eq!(out, all.as_bytes());
        assert_eq!(
            f.usage,
            Some(Usage {
                input: 11,
                output: 6,
                ..Default::default()
            })
        );
        assert!(f.done);
    }

    #[test]
    fn translates_between_formats() {
        let mut f = SseFilter::between(Format::Chat, Format::Messages, Default::default());
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
        assert_eq!(f.usage.unwrap().input, 7);
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
