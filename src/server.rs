//! Assembles the process: the Pingora server with the proxy service, and a control runtime for
//! everything else (the store, the decision-log writer, the admin listener, the demo upstream).
//!
//! Pingora owns signals: SIGINT stops at once, SIGTERM stops gracefully (in-flight streams get
//! `server.graceful_shutdown_timeout_seconds`), SIGQUIT hands the listeners to a new process
//! started with `serve --upgrade` (zero-downtime upgrade). When Pingora has stopped, the
//! decision log is drained (to the store, or to its spool file) before the process exits.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};

use crate::admin::{self, AdminState};
use crate::cli::ServeArgs;
use crate::config;
use crate::metrics::Metrics;
use crate::proxy::{forward::Upstream, Proxy, ProxyState};
use crate::router::{routes_from_policies, DualRouter};
use crate::store::{self, DecisionLog};

/// How long the decision log may take to drain at shutdown before the rest stays in its spool.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config::load(&args.config)?;
    // Port 0 means "any free port": pick one now so it can be reported.
    config.listen = concrete_port(config.listen).context("choosing a port for `listen`")?;
    let config = Arc::new(config);

    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dualrouter-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;

    let metrics = Arc::new(Metrics::new()?);
    // WASM plugins (src/plugins): loaded once here; one that cannot load stops the start. Kept
    // alive for the life of the server (to be handed to the router and registry).
    let _plugins =
        crate::plugins::start(&config.plugins, &metrics.registry).context("loading plugins")?;
    let store = control
        .block_on(store::open_and_seed(&config))
        .with_context(|| format!("opening the store {}", store::redact_url(&config.database)))?;
    let decision_log = DecisionLog::start_on(
        control.handle(),
        store.clone(),
        &config.decision_log,
        &metrics.registry,
    )
    .context("starting the decision log")?;

    let admin_listener = bind(config.admin.listen).context("binding the admin listener")?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_app = admin::router(
        AdminState::from_config(store.clone(), &config),
        metrics.clone(),
    );
    spawn_http(&control, "admin", admin_listener, admin_app)?;

    let mut demo_addr = None;
    if let Some(d) = &config.demo {
        let listener = bind(d.listen).context("binding the demo upstream (demo.listen)")?;
        demo_addr = Some(listener.local_addr()?);
        let app = crate::demo::router(crate::demo::DemoOptions {
            chunk_delay: d.chunk_delay,
        });
        spawn_http(&control, "demo upstream", listener, app)?;
    }

    let policies = control
        .block_on(store.list_policies())
        .context("reading routing policies")?;
    let router = Arc::new(
        DualRouter::build(&config, routes_from_policies(&policies), metrics.clone())
            .context("building the router (encoder, classifiers)")?,
    );
    tracing::info!(
        routes = router.routes().len(),
        encoder = router.encoder().id(),
        "router ready"
    );

    let state = Arc::new(ProxyState {
        config: config.clone(),
        upstream: Upstream::new(&config)?,
        metrics: metrics.clone(),
        decision_log: decision_log.clone(),
        router,
    });

    let opt = Opt {
        upgrade: args.upgrade,
        ..Default::default()
    };
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        pid_file: config
            .server
            .pid_file
            .clone()
            .unwrap_or_else(|| "/tmp/dualrouter.pid".into()),
        upgrade_sock: config
            .server
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/dualrouter_upgrade.sock".into()),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Proxy { state },
        "dualrouter proxy",
    );
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);

    tracing::info!("proxy listening on http://{}", config.listen);
    if config.admin.token.is_none() {
        tracing::warn!(
            "admin listening on http://{admin_addr} WITHOUT a token (loopback only); set admin.token_env to require one"
        );
    } else {
        tracing::info!("admin listening on http://{admin_addr} (bearer token required)");
    }
    if let Some(d) = demo_addr {
        tracing::info!("demo upstream listening on http://{d}/v1");
    }
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "proxy": config.listen.to_string(),
            "admin": admin_addr.to_string(),
            "demo": demo_addr.map(|a| a.to_string()),
        });
        std::fs::write(path, ready.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }

    server.run(RunArgs::default());
    if let Err(e) = control.block_on(decision_log.shutdown(DRAIN_TIMEOUT)) {
        tracing::warn!(
            "decision log not fully drained at shutdown ({e}); the rest is in its spool"
        );
    }
    control.block_on(store.close());
    tracing::info!("dualrouter stopped");
    Ok(())
}

/// Serves an axum app on an already-bound listener, on the control runtime.
fn spawn_http(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
) -> anyhow::Result<()> {
    let _guard = rt.enter();
    let listener =
        tokio::net::TcpListener::from_std(listener).with_context(|| format!("{name} listener"))?;
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("{name} stopped: {e}");
        }
    });
    Ok(())
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Resolves port 0 to a free port by binding and releasing it.
fn concrete_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = TcpListener::bind(addr)?;
    Ok(l.local_addr()?)
}

/// `dualrouter route`: the decision the proxy would make for a prompt; nothing is sent upstream.
pub fn route_command(args: &crate::cli::RouteArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::new()?);
    let decision = rt.block_on(async {
        // The store is the source of truth for policies; the config's seed them.
        let store = store::open_and_seed(&config).await?;
        let policies = store.list_policies().await?;
        store.close().await;
        let router = DualRouter::build(&config, routes_from_policies(&policies), metrics)?;
        let conversation = crate::router::conversation::Conversation::from_prompt(&args.prompt);
        anyhow::Ok(router.route(&conversation).await?)
    })?;
    let r = &decision.route;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "route": { "domain": r.domain, "action": r.action, "source": r.source, "confidence": r.confidence },
                "latencies_ms": decision.latencies_ms,
            })
        );
    } else {
        println!("route       {}", r.name());
        println!("source      {}", r.source.as_str());
        println!("confidence  {:.2}", r.confidence);
    }
    Ok(())
}
