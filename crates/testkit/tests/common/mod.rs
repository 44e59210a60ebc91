//! Helpers shared by the test kit's own tests.
#![allow(dead_code)]

use std::time::Duration;

use dualrouter_testkit::Mock;
use serde_json::Value;

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// `(event name or "", data)` of each SSE event; `data` as JSON, or a string (`[DONE]`).
    pub fn events(&self) -> Vec<(String, Value)> {
        sse(&self.text)
    }
}

pub fn sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let v = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, v)
        })
        .collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POST `body` to `path` under the mock's root, with `headers`.
pub async fn post(mock: &Mock, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = client()
        .post(format!("{}{path}", mock.root_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        text,
    }
}

pub async fn chat(mock: &Mock, body: &Value) -> Answer {
    post(mock, "/v1/chat/completions", body, &[]).await
}

pub async fn messages(mock: &Mock, body: &Value) -> Answer {
    post(
        mock,
        "/v1/messages?beta=true",
        body,
        &[
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "k"),
            ("anthropic-beta", "claude-code-20250219"),
        ],
    )
    .await
}

pub async fn responses(mock: &Mock, body: &Value) -> Answer {
    post(mock, "/v1/responses", body, &[]).await
}
