//! Database test helpers: which database a test runs on ([`TestDb`]: SQLite in a temp dir or a
//! throwaway PostgreSQL cluster, [`PgCluster`] from the test kit), and the admin API on a
//! test config.
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::sync::Arc;

use dualrouter::admin::{api_router, AdminState};
use dualrouter_core::config::{self, Config};
use dualrouter_store::Store;
pub use dualrouter_testkit::db::{free_port, PgCluster};
use tempfile::TempDir;

/// Which database a test runs on. Holds the cluster (or temp dir) alive.
pub enum TestDb {
    Sqlite(TempDir),
    Postgres(Arc<PgCluster>),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` only when PostgreSQL is missing and skipping is allowed.
    pub fn postgres() -> Option<TestDb> {
        PgCluster::start().map(|c| TestDb::Postgres(Arc::new(c)))
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}/test.db", dir.path().display()),
            TestDb::Postgres(c) => c.url(),
        }
    }

    pub fn cluster(&self) -> Option<Arc<PgCluster>> {
        match self {
            TestDb::Sqlite(_) => None,
            TestDb::Postgres(c) => Some(c.clone()),
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url()).await.unwrap()
    }
}

/// The admin token the test config uses (through `TEST_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-123";

/// A config with two providers and three models, an admin token and one seeded policy.
pub fn test_config(database: &str) -> Config {
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0, token_env: TEST_ADMIN_TOKEN }}
database: "{database}"
providers:
  - name: alpha
    kind: openai
    base_url: http://127.0.0.1:9/v1
    models:
      - {{ id: small, cost_per_mtok: {{ input: 0.1, output: 0.4 }}, tier: budget }}
      - {{ id: large, cost_per_mtok: {{ input: 2.5, output: 10, cache_read: 0.25, cache_write: 3.125 }}, context_tokens: 128000 }}
  - name: beta
    kind: openai
    base_url: https://api.beta.example/v1
    api_key_env: TEST_BETA_KEY
    models:
      - {{ id: sonnet, cost_per_mtok: {{ input: 3, output: 15 }} }}
policies:
  - {{ domain: programming, action: code-generation, description: "writing new code", models: [large, small] }}
"#
    );
    let raw = config::parse(&yaml, "test.yaml").unwrap();
    config::validated::validate(raw, &|name| match name {
        "TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
        "TEST_BETA_KEY" => Some("sk-beta-secret-canary".to_string()),
        _ => None,
    })
    .unwrap()
}

/// Serves the admin API on 127.0.0.1:0; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve_admin(state: AdminState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, api_router(state)).await;
    });
    format!("http://{addr}")
}
