//! The Arch-Router client against a mock Arch-Router server on loopback that answers the way
//! the real model does (and fails the ways real servers fail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use dualrouter_core::conversation::{Conversation, Turn};
use dualrouter_routing::classify::arch_router::{
    ArchRouterClient, ArchRouterError, ArchRouterSettings,
};
use dualrouter_routing::classify::RouteSpec;
use serde_json::{json, Value};

#[derive(Default)]
struct Mock {
    /// What the next request gets: (delay ms, HTTP status, answer text).
    script: Mutex<Vec<(u64, u16, String)>>,
    seen: Mutex<Vec<Value>>,
}

async fn answer(State(m): State<Arc<Mock>>, body: axum::Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    m.seen.lock().unwrap().push(body.0.clone());
    let (delay, status, text) = {
        let mut s = m.script.lock().unwrap();
        if s.is_empty() {
            (0, 200, r#"{"route": "other"}"#.to_string())
        } else {
            s.remove(0)
        }
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let completion = json!({
        "id": "chatcmpl-arch", "object": "chat.completion", "created": 1, "model": "katanemo/Arch-Router-1.5B",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 8, "total_tokens": 108}
    });
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        axum::Json(completion),
    )
        .into_response()
}

async fn start() -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(answer))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (mock, url)
}

fn routes() -> Vec<RouteSpec> {
    vec![
        RouteSpec::new(
            "programming/bug-fix",
            "finding and fixing bugs in existing code",
        ),
        RouteSpec::new(
            "programming/code-generation",
            "writing new code from a description",
        ),
        RouteSpec::new("writing/summary", "summarising a document"),
    ]
}

fn turn(role: &str, text: &str) -> Turn {
    Turn {
        role: role.into(),
        text: text.into(),
    }
}

fn client(url: &str) -> ArchRouterClient {
    ArchRouterClient::new(ArchRouterSettings {
        base_url: url.to_string(),
        timeout: Duration::from_millis(300),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(400),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn request_is_exactly_the_trained_input() {
    let (mock, url) = start().await;
    mock.script
        .lock()
        .unwrap()
        .push((0, 200, r#"{"route": "programming/bug-fix"}"#.into()));
    let c = client(&url);
    let long_history: String = "this is an old message about the weather. ".repeat(400);
    let conv = Conversation {
        turns: vec![
            turn("system", "You are a helpful assistant."),
            turn("user", &long_history),
            turn("assistant", "Sure."),
            turn("tool", "{\"temp\": 20}"),
            turn("user", ""),
            turn("assistant", "Anything else?"),
            turn(
                "user",
                "my rust code panics with index out of bounds, fix it",
            ),
        ],
    };
    let got = c.classify(&routes(), &conv).await.unwrap();
    assert_eq!(got.as_deref(), Some("programming/bug-fix"));

    let req = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(req["model"], "katanemo/Arch-Router-1.5B");
    assert_eq!(req["temperature"], 0.0);
    assert!(req["max_tokens"].as_u64().unwrap() <= 64);
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "one user message, no system message");
    assert_eq!(msgs[0]["role"], "user");
    let expected = format!(
        "You are a helpful assistant designed to find the best suited route.\n\
You are provided with route description within <routes></routes> XML tags:\n\
<routes>\n{}\n</routes>\n\n<conversation>\n{}\n</conversation>\n\n\
Your task is to decide which route is best suit with user intent on the conversation in <conversation></conversation> XML tags.  Follow the instruction:\n\
1. If the latest intent from user is irrelevant or user intent is full filled, response with other route {{\"route\": \"other\"}}.\n\
2. You must analyze the route descriptions and find the best match route for user latest intent.\n\
3. You only response the name of the route that best matches the user's request, use the exact name in the <routes></routes>.\n\
\n\
Based on your analysis, provide your response in the following JSON formats if you decide to match any route:\n\
{{\"route\": \"route_name\"}}\n",
        r#"[{"name":"programming/bug-fix","description":"finding and fixing bugs in existing code"},{"name":"programming/code-generation","description":"writing new code from a description"},{"name":"writing/summary","description":"summarising a document"}]"#,
        // The ~4,000-token old message does not fit the 2,048-token budget: trimmed, oldest first;
        // system, tool and empty messages dropped; the latest user message kept.
        r#"[{"role":"assistant","content":"Sure."},{"role":"assistant","content":"Anything else?"},{"role":"user","content":"my rust code panics with index out of bounds, fix it"}]"#,
    );
    assert_eq!(msgs[0]["content"].as_str().unwrap(), expected);
}

#[tokio::test]
async fn answers_as_the_real_model_gives_them() {
    let (mock, url) = start().await;
    let c = client(&url);
    let conv = Conversation::from_prompt("summarise this article for me");
    let cases: Vec<(&str, Option<&str>)> = vec![
        (r#"{"route": "writing/summary"}"#, Some("writing/summary")),
        ("{'route': 'writing/summary'}", Some("writing/summary")),
        (
            "```json\n{\"route\": \"writing/summary\"}\n```",
            Some("writing/summary"),
        ),
        (
            "\n  {\"route\":\"writing/summary\"}\n",
            Some("writing/summary"),
        ),
        (r#"{"route": "other"}"#, None),
        (r#"{"route": "cooking/recipe"}"#, None),
        ("as an AI model I think you want a summary", None),
    ];
    for (answer, want) in cases {
        mock.script
            .lock()
            .unwrap()
            .push((0, 200, answer.to_string()));
        assert_eq!(
            c.classify(&routes(), &conv).await.unwrap().as_deref(),
            want,
            "{answer}"
        );
    }
}

#[tokio::test]
async fn slow_and_failing_server_then_breaker() {
    let (mock, url) = start().await;
    let c = client(&url);
    let conv = Conversation::from_prompt("write a python function");
    // Slow: the 300 ms timeout holds.
    mock.script.lock().unwrap().push((
        2_000,
        200,
        r#"{"route": "programming/code-generation"}"#.into(),
    ));
    let t = Instant::now();
    let e = c.classify(&routes(), &conv).await.unwrap_err();
    assert!(matches!(e, ArchRouterError::Timeout(_)), "{e}");
    assert!(t.elapsed() < Duration::from_millis(900));
    // 500s: the third consecutive failure opens the breaker.
    mock.script
        .lock()
        .unwrap()
        .extend([(0, 500, "oops".to_string()), (0, 500, "oops".to_string())]);
    assert!(matches!(
        c.classify(&routes(), &conv).await.unwrap_err(),
        ArchRouterError::Status(500)
    ));
    assert!(matches!(
        c.classify(&routes(), &conv).await.unwrap_err(),
        ArchRouterError::Status(500)
    ));
    let calls = mock.seen.lock().unwrap().len();
    // Open: refused without calling the server.
    assert!(matches!(
        c.classify(&routes(), &conv).await.unwrap_err(),
        ArchRouterError::BreakerOpen
    ));
    assert_eq!(mock.seen.lock().unwrap().len(), calls);
    // After the cool-down one probe goes through; it succeeds, so the breaker closes.
    tokio::time::sleep(Duration::from_millis(450)).await;
    mock.script.lock().unwrap().push((
        0,
        200,
        r#"{"route": "programming/code-generation"}"#.into(),
    ));
    assert_eq!(
        c.classify(&routes(), &conv).await.unwrap().as_deref(),
        Some("programming/code-generation")
    );
    mock.script
        .lock()
        .unwrap()
        .push((0, 200, r#"{"route": "writing/summary"}"#.into()));
    assert_eq!(
        c.classify(&routes(), &conv).await.unwrap().as_deref(),
        Some("writing/summary")
    );
    assert_eq!(mock.seen.lock().unwrap().len(), calls + 2);
}
