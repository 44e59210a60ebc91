//! The intermediate representation every wire format is decoded into and encoded from.
//!
//! A conversation is a flat list of [`Item`]s in the order they happened, as the Responses API
//! has it: messages, tool calls, tool results and reasoning each stand alone. Chat completions
//! (tool calls inside an assistant message, results as `tool` messages) and Anthropic Messages
//! (alternating turns of content blocks) are groupings of that list, rebuilt by their encoders.
//!
//! Only what crosses formats is modelled. A request whose client and upstream speak the same
//! format never passes through here (it is forwarded as sent), so a field one format alone has
//! needs no place in the IR unless another format can express it.

use std::sync::Arc;

use serde_json::{Map, Value};

pub type Obj = Map<String, Value>;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// System or developer: instructions rather than conversation.
    pub fn is_instruction(self) -> bool {
        matches!(self, Self::System | Self::Developer)
    }
}

/// Where an opaque reasoning token came from. Each provider accepts only its own back: an
/// Anthropic thinking `signature`, an OpenAI reasoning item's `encrypted_content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Anthropic,
    OpenAi,
}

/// An opaque token a provider issued with its reasoning, carried through clients of other
/// formats so that it can go back to the provider that issued it (see [`crate::seal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub origin: Origin,
    pub value: String,
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
        /// Anthropic's prompt-cache breakpoint, kept for Anthropic upstreams.
        cache_control: Option<Value>,
    },
    Image {
        source: Source,
        /// OpenAI's `detail` (`low`, `high`, `auto`).
        detail: Option<String>,
        cache_control: Option<Value>,
    },
    /// A document or file (a PDF, say).
    File {
        source: Source,
        filename: Option<String>,
        cache_control: Option<Value>,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text {
            text: text.into(),
            cache_control: None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Where image or file bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Url(String),
    Base64 {
        media_type: String,
        data: String,
    },
    /// A provider-side file id (only meaningful to the provider that issued it).
    FileId(String),
}

/// How a tool call's arguments are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallKind {
    /// JSON arguments for a function tool.
    #[default]
    Function,
    /// Free-form text input for a Responses `custom` tool; formats without custom tools see a
    /// function taking `{"input": string}`.
    Custom,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Message {
        role: Role,
        content: Vec<Part>,
    },
    ToolCall {
        call_id: String,
        name: String,
        /// The Responses `namespace` the function belongs to, if any.
        namespace: Option<String>,
        /// JSON text for a function; the raw input for a custom tool.
        arguments: String,
        kind: CallKind,
    },
    ToolResult {
        call_id: String,
        content: Vec<Part>,
        is_error: bool,
        kind: CallKind,
        cache_control: Option<Value>,
    },
    Reasoning {
        /// The reasoning text or its summary, when the provider shows it.
        text: String,
        /// The provider's signature or encrypted content.
        sealed: Option<Sealed>,
        /// Anthropic `redacted_thinking`: `sealed` holds its data and there is no text.
        redacted: bool,
    },
}

/// A function's parameters (a JSON schema): a value of its own, or the one in the request body
/// the tool was decoded from, shared rather than copied (agents send a dozen schemas with every
/// turn). Reads as the schema's [`Value`]; a missing or null schema reads as an object schema
/// without properties.
#[derive(Clone)]
pub struct Schema(SchemaAt);

#[derive(Clone)]
enum SchemaAt {
    Own(Value),
    /// Tool `tool` of the body's `tools` (inside it, function `inner` of a Responses
    /// `namespace`), where its format keeps the schema.
    InBody {
        body: Arc<Obj>,
        format: crate::Format,
        tool: usize,
        inner: Option<usize>,
    },
}

/// What a function without a schema takes.
fn no_parameters() -> &'static Value {
    static EMPTY: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| serde_json::json!({"type": "object", "properties": {}}));
    &EMPTY
}

impl Schema {
    pub fn new(v: Value) -> Self {
        Self(SchemaAt::Own(v))
    }

    /// The schema a decoder found for tool `tool` (`inner`: of a Responses namespace) of a
    /// `format` body: read in place when the body is `shared`, else a copy of `found` (none:
    /// an object schema without properties).
    pub(crate) fn decoded(
        shared: Option<&Arc<Obj>>,
        format: crate::Format,
        tool: usize,
        inner: Option<usize>,
        found: Option<&Value>,
    ) -> Self {
        match shared {
            Some(body) => Self::in_body(body, format, tool, inner),
            None => Self::new(found.cloned().unwrap_or_else(|| no_parameters().clone())),
        }
    }

    /// The schema of tool `tool` of a request `body` in `format` (`inner`: of the function at
    /// that index of a Responses namespace), read where it is when asked for.
    pub(crate) fn in_body(
        body: &Arc<Obj>,
        format: crate::Format,
        tool: usize,
        inner: Option<usize>,
    ) -> Self {
        Self(SchemaAt::InBody {
            body: body.clone(),
            format,
            tool,
            inner,
        })
    }

    pub fn get(&self) -> &Value {
        let (body, format, tool, inner) = match &self.0 {
            SchemaAt::Own(v) => return v,
            SchemaAt::InBody {
                body,
                format,
                tool,
                inner,
            } => (body, *format, *tool, *inner),
        };
        let mut t = body.get("tools").and_then(|t| t.get(tool));
        if let Some(j) = inner {
            t = t.and_then(|t| t.get("tools")).and_then(|t| t.get(j));
        }
        // As each format's decoder reads it: a Responses null schema is none at all.
        let schema: Option<&Value> = match format {
            crate::Format::Chat => t.and_then(|t| t.get("function")?.get("parameters")),
            crate::Format::Messages => t.and_then(|t| t.get("input_schema")),
            crate::Format::Responses => {
                t.and_then(|t| t.get("parameters")).filter(|p| !p.is_null())
            }
        };
        schema.unwrap_or_else(|| no_parameters())
    }
}

impl std::ops::Deref for Schema {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.get()
    }
}

impl From<Value> for Schema {
    fn from(v: Value) -> Self {
        Self::new(v)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl serde::Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function {
        name: String,
        description: Option<String>,
        parameters: Schema,
        strict: Option<bool>,
        /// The Responses `namespace` grouping it, if any.
        namespace: Option<String>,
        cache_control: Option<Value>,
    },
    /// A Responses free-form tool (`type: custom`, optionally with a grammar `format`).
    Custom {
        name: String,
        description: Option<String>,
        format: Option<Value>,
    },
    /// A tool the provider runs itself or defines itself (Responses `web_search`, Anthropic
    /// `web_search_…`, `bash_…`): only an upstream of the same format can take it.
    Hosted { format: crate::Format, spec: Value },
}

impl Tool {
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Function { name, .. } | Self::Custom { name, .. } => Some(name),
            Self::Hosted { spec, .. } => spec.get("name").and_then(Value::as_str),
        }
    }
}

/// Which tool the model must (or must not) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// This function (or custom tool).
    Named(String),
}

/// How hard to think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
    /// Above high: OpenAI's `xhigh`, Anthropic's `xhigh` and `max`.
    Max,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" | "max" => Self::Max,
            _ => return None,
        })
    }

    /// OpenAI's name (`xhigh` is not accepted by every model: above high becomes high).
    pub fn openai(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High | Self::Max => "high",
        }
    }

    /// Anthropic's `output_config.effort` (no `minimal`: low).
    pub fn anthropic(self) -> &'static str {
        match self {
            Self::Minimal | Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Max => "max",
        }
    }

    /// A thinking budget for Anthropic's `thinking: {type: enabled}` (documented in
    /// docs/translation.md).
    pub fn budget_tokens(self) -> u64 {
        match self {
            Self::Minimal => 1024,
            Self::Low => 2048,
            Self::Medium => 8192,
            Self::High => 16384,
            Self::Max => 32768,
        }
    }

    /// The effort a thinking budget corresponds to (the inverse of [`Self::budget_tokens`]).
    pub fn from_budget(budget: u64) -> Self {
        match budget {
            0..=1535 => Self::Minimal,
            1536..=4095 => Self::Low,
            4096..=12287 => Self::Medium,
            12288..=24575 => Self::High,
            _ => Self::Max,
        }
    }
}

/// Whether and how the model reasons before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thinking {
    /// Explicitly off (Anthropic `disabled`, OpenAI effort `none`).
    Off,
    /// On with a token budget (Anthropic `enabled`).
    Budget(u64),
    /// On, the model deciding how much (Anthropic `adaptive`; OpenAI's effort alone).
    Adaptive,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reasoning {
    pub thinking: Option<Thinking>,
    pub effort: Option<Effort>,
    /// OpenAI's `reasoning.summary` (`auto`, `concise`, `detailed`).
    pub summary: Option<String>,
}

impl Reasoning {
    /// The effort this asks for, if reasoning is on at all.
    pub fn wanted_effort(&self) -> Option<Effort> {
        match self.thinking {
            Some(Thinking::Off) => None,
            Some(Thinking::Budget(b)) => Some(self.effort.unwrap_or(Effort::from_budget(b))),
            Some(Thinking::Adaptive) | None => self.effort,
        }
    }

    /// True when the request turns reasoning on.
    pub fn on(&self) -> bool {
        match self.thinking {
            Some(Thinking::Off) => false,
            Some(_) => true,
            None => self.effort.is_some(),
        }
    }
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
        description: Option<String>,
    },
}

/// A request, whatever format it came in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// The format it was decoded from (names fields in errors).
    pub origin: Option<crate::Format>,
    pub model: String,
    /// Top-level instructions: Anthropic `system`, Responses `instructions`.
    pub system: Vec<Part>,
    pub items: Vec<Item>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub max_output_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Chat's `stream_options.include_usage`.
    pub include_usage: bool,
    pub reasoning: Reasoning,
    pub output_format: Option<OutputFormat>,
    /// OpenAI `metadata` (string values).
    pub metadata: Option<Obj>,
    /// An end-user id (OpenAI `user` / `safety_identifier`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    pub prompt_cache_key: Option<String>,
    /// Chat `n`: answers wanted.
    pub n: Option<u64>,
    /// Fields of the client's format with no counterpart elsewhere, by name (for notes).
    pub unmapped: Vec<String>,
}

impl Request {
    /// The function and custom tools (what a call in the answer can name).
    pub fn callable_tools(&self) -> impl Iterator<Item = &Tool> {
        self.tools
            .iter()
            .filter(|t| !matches!(t, Tool::Hosted { .. }))
    }
}

/// Token counts. `input` excludes the cached part: the prompt is `input + cache_read +
/// cache_write` (Anthropic's split; OpenAI's `prompt_tokens` is that sum, with
/// `cached_tokens` = `cache_read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    /// Reasoning tokens (already counted in `output`).
    pub reasoning: u64,
}

impl Usage {
    /// Every prompt token, cached or not.
    pub fn prompt(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Stop {
    #[default]
    End,
    MaxTokens,
    ToolUse,
    StopSequence(Option<String>),
    ContentFilter,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub id: Option<String>,
    pub model: Option<String>,
    /// Assistant items only: messages, tool calls, reasoning.
    pub output: Vec<Item>,
    pub stop: Stop,
    pub usage: Option<Usage>,
}

impl Response {
    /// The answer's text (every assistant message joined).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for item in &self.output {
            if let Item::Message { content, .. } = item {
                for p in content {
                    if let Some(t) = p.as_text() {
                        s.push_str(t);
                    }
                }
            }
        }
        s
    }
}

/// One step of a streamed answer, whatever format it came in.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The answer has begun.
    Start {
        id: Option<String>,
        model: Option<String>,
    },
    /// The counts so far (each replaces the last).
    Usage(Usage),
    Text(String),
    Reasoning(String),
    /// The signature or encrypted content of the open reasoning.
    ReasoningSealed(Sealed),
    /// A whole redacted reasoning block.
    RedactedReasoning(Sealed),
    /// A tool call begins; `index` tells its argument fragments apart.
    ToolCall {
        index: u64,
        call_id: String,
        name: String,
        namespace: Option<String>,
        kind: CallKind,
    },
    ToolArgs {
        index: u64,
        delta: String,
    },
    /// The open block (text, reasoning, tool call) is complete.
    EndBlock,
    Stop(Stop),
    /// The upstream reported an error in the stream.
    Error {
        message: String,
        kind: String,
    },
    /// The upstream finished the answer.
    Done,
}
