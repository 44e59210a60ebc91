//! The official OpenAI Python SDK against the proxy (a venv made by `scripts/setup.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::mock::Mock;
use common::Proxy;

/// The Python with the SDKs: `DUALROUTER_PYTHON`, or the repository's `.venv`.
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("DUALROUTER_PYTHON") {
        return p.into();
    }
    let p = common::repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make test` (or scripts/setup.sh) to create the venv with the SDKs",
        p.display()
    );
    p
}

#[tokio::test]
async fn openai_python_sdk_completion_and_stream() {
    let mock = Mock::start().await;
    let yaml = format!(
        r#"listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
providers:
  - name: mock
    kind: openai
    base_url: {}
    models:
      - {{ id: sdk-model, upstream_id: echo }}
"#,
        mock.base_url()
    );
    let p = Proxy::start(&yaml).await;
    let base = format!("{}/v1", p.proxy);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(common::repo_root().join("tests/sdk/openai_sdk.py"))
            .arg(base)
            .arg("sdk-model")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK run failed:\n{stderr}\n{}",
        p.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["text"].as_str().unwrap().starts_with("received "), "{v}");
    assert_eq!(v["model_header"], "sdk-model");
    assert_eq!(
        v["streamed"],
        "tok0 tok1 tok2 ",
        "{v} {}",
        String::from_utf8_lossy(&mock.last().body)
    );
    // 3 content chunks + the usage chunk the SDK asked for.
    assert_eq!(v["chunks"], 4, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 7, "{v}");
    assert_eq!(mock.count(), 3);
}
