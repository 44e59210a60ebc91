//! Assembles the Pingora server: the proxy service, the admin listener, the demo upstream.
//!
//! Pingora owns signals: SIGINT stops at once, SIGTERM stops gracefully (in-flight streams get
//! `server.graceful_shutdown_timeout_seconds`), SIGQUIT hands the listeners to a new process
//! started with `serve --upgrade` (zero-downtime upgrade).

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use crate::admin::{self, AdminCore, AxumService};
use crate::cli::ServeArgs;
use crate::config;
use crate::metrics::Metrics;
use crate::proxy::{forward::Upstream, Proxy, ProxyState};

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config::load(&args.config)?;
    // Port 0 means "any free port": pick one now so it can be reported.
    config.listen = concrete_port(config.listen).context("choosing a port for `listen`")?;
    let config = Arc::new(config);

    let admin_listener = bind(config.admin.listen).context("binding the admin listener")?;
    let admin_addr = admin_listener.local_addr()?;
    let demo_listener = match &config.demo {
        Some(d) => Some(bind(d.listen).context("binding the demo upstream (demo.listen)")?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new()?);
    let state = Arc::new(ProxyState {
        config: config.clone(),
        upstream: Upstream::new(&config)?,
        metrics: metrics.clone(),
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
        Proxy {
            state: state.clone(),
        },
        "dualrouter proxy",
    );
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);

    server.add_service(background_service(
        "admin",
        AxumService {
            name: "admin",
            listener: Mutex::new(Some(admin_listener)),
            app: admin::router(AdminCore {
                token: config.admin.token.clone(),
                metrics,
            }),
        },
    ));
    let mut demo_addr = None;
    if let (Some(listener), Some(d)) = (demo_listener, &config.demo) {
        demo_addr = Some(listener.local_addr()?);
        server.add_service(background_service(
            "demo upstream",
            AxumService {
                name: "demo upstream",
                listener: Mutex::new(Some(listener)),
                app: crate::demo::router(crate::demo::DemoOptions {
                    chunk_delay: d.chunk_delay,
                }),
            },
        ));
    }

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
    tracing::info!("dualrouter stopped");
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
