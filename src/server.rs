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
use crate::live::{Live, Shared};
use crate::trainer::Trainer;
use dualrouter_core::config;
use dualrouter_core::metrics::Metrics;
use dualrouter_proxy::Proxy;
use dualrouter_store::{self as store, DecisionLog};

/// How long the decision log may take to drain at shutdown before the rest stays in its spool.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config::load(&args.config)?;
    let admin_listener = bind(config.admin.listen).context("binding the admin listener")?;
    // Port 0 means "any free port": pick one now so it can be reported, and hold it until the
    // process ends (see `PortHold`).
    let (listen, _port_hold) =
        concrete_port(config.listen).context("choosing a port for `listen`")?;
    config.listen = listen;
    let config = Arc::new(config);

    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dualrouter-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;

    let metrics = Arc::new(Metrics::new()?);
    // WASM plugins (src/plugins) are loaded with each generation of the live state (`Live`);
    // their instruments are registered once, here.
    let plugin_metrics = dualrouter_plugins::PluginMetrics::new()?;
    plugin_metrics.register(&metrics.registry)?;
    // OpenTelemetry traces (`telemetry:` or the OTEL_* variables): an exporter thread of their
    // own; settings are read once, here.
    if let Some(t) = &config.telemetry {
        dualrouter_proxy::start_traces(t, &metrics).context("starting the trace exporter")?;
    }
    let store = control
        .block_on(store::open_and_seed(&config.database, &config.policies))
        .with_context(|| format!("opening the store {}", store::redact_url(&config.database)))?;
    let decision_log = DecisionLog::start_on(
        control.handle(),
        store.clone(),
        &config.decision_log,
        &metrics.registry,
    )
    .context("starting the decision log")?;
    // Virtual keys: the cache and its follower, and the settlement writer (started whatever the
    // config says, so a reload that turns `auth.virtual_keys` on finds them running).
    let keyring = store::Keyring::new(store.clone());
    {
        let _guard = control.enter();
        keyring.start();
    }
    if let Err(e) = control.block_on(keyring.refresh()) {
        tracing::warn!("virtual keys not loaded yet: {e}");
    }
    // Expired stored responses go in small batches (the settings of the config at start).
    control.spawn(dualrouter_proxy::prune_stored_responses(
        store.clone(),
        config.response_store,
    ));

    let mut demo_addr = None;
    if let Some(d) = &config.demo {
        let listener = bind(d.listen).context("binding the demo upstream (demo.listen)")?;
        demo_addr = Some(listener.local_addr()?);
        let app = crate::demo::router(crate::demo::DemoOptions {
            chunk_delay: d.chunk_delay,
        });
        spawn_http(&control, "demo upstream", listener, app)?;
    }

    let live = control
        .block_on(Live::start(
            (*config).clone(),
            &args.config,
            Shared {
                metrics: metrics.clone(),
                plugin_metrics,
                decision_log: decision_log.clone(),
                store: store.clone(),
                control: control.handle().clone(),
                keys: Some(keyring.clone()),
            },
        ))
        .map_err(|e| anyhow::anyhow!("{}", e.reasons().join("; ")))
        .context("building the router (encoder, classifiers, MIRT checkpoint)")?;
    {
        let _guard = control.enter();
        live.watch();
    }
    // Old decisions and feedback go in small batches (`retention:`, read at every round).
    control.spawn(crate::retention::prune_forever(live.states()));
    let router = live.current().router.clone();
    tracing::info!(
        routes = router.routes().len(),
        encoder = router.encoder().id(),
        checkpoint = ?router.scorer().version,
        "router ready"
    );

    let trainer = Arc::new(Trainer::new(live.clone()));
    if let Some(every) = &config.mirt.retrain_every {
        // Validated with the config.
        if let Ok(every) = dualrouter_ml::mirt::parse_interval(every) {
            let _guard = control.enter();
            trainer.clone().schedule(every);
            tracing::info!(every = %every.as_secs(), "scheduled MIRT refits (seconds)");
        }
    }

    let admin_addr = admin_listener.local_addr()?;
    let admin_state = AdminState {
        store: store.clone(),
        token: config.admin.token.clone(),
        catalog: router.registry().clone(),
        live: Some(live.clone()),
        trainer: Some(trainer),
    };
    spawn_http(
        &control,
        "admin",
        admin_listener,
        admin::router(admin_state, metrics.clone()),
    )?;

    let opt = Opt {
        upgrade: args.upgrade,
        ..Default::default()
    };
    // Pingora keeps in-flight requests alive only during its grace period, then cancels them
    // with the runtimes. So its grace period is the drain bound, and a watcher ends the
    // process as soon as nothing is in flight (see `exit_when_drained`).
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(
            config
                .server
                .graceful_shutdown_timeout_seconds
                .max(config.server.grace_period_seconds),
        ),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_TEARDOWN_SECONDS),
        pid_file: config
            .server
            .pid_file
            .clone()
            .unwrap_or_else(|| DEFAULT_PID_FILE.into()),
        upgrade_sock: config
            .server
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/dualrouter_upgrade.sock".into()),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let admission = Arc::new(dualrouter_proxy::Admission::with_histogram(
        live.current().metrics.queue_delay.clone(),
    ));
    let app = dualrouter_proxy::GuardedProxy {
        inner: Arc::new(pingora::proxy::http_proxy(
            &server.configuration,
            Proxy {
                states: live.states(),
                in_flight: in_flight.clone(),
                busy: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                admission: admission.clone(),
            },
        )),
        states: live.states(),
        admission: admission.clone(),
        drain_linger: config.server.drain_linger,
    };
    let mut proxy = pingora::services::listening::Service::new("dualrouter proxy".to_string(), app);
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
    // Pingora writes its pid file only when it daemonizes; the upgrade procedure needs it
    // either way (`kill -QUIT "$(cat PID_FILE)"`).
    let pid_file = config
        .server
        .pid_file
        .clone()
        .unwrap_or_else(|| DEFAULT_PID_FILE.into());
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        tracing::warn!("cannot write the pid file {pid_file}: {e}");
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

    let cleanup = Arc::new(Cleanup {
        control: control.handle().clone(),
        decision_log: decision_log.clone(),
        keyring: keyring.clone(),
        store: store.clone(),
        done: std::sync::Once::new(),
    });
    exit_when_drained(
        server.watch_execution_phase(),
        Drain {
            in_flight,
            admission,
            min_grace: Duration::from_secs(config.server.grace_period_seconds),
            linger: config.server.drain_linger,
        },
        cleanup.clone(),
    );
    server.run(RunArgs::default());
    cleanup.run();
    Ok(())
}

const DEFAULT_PID_FILE: &str = "/tmp/dualrouter.pid";

/// Seconds Pingora gives its runtimes to stop once the drain is over.
const RUNTIME_TEARDOWN_SECONDS: u64 = 5;

/// What happens once at exit, whoever gets there first: the decision log drained (to the
/// store, or to its spool), the store closed.
struct Cleanup {
    control: tokio::runtime::Handle,
    decision_log: DecisionLog,
    keyring: std::sync::Arc<store::Keyring>,
    store: store::Store,
    done: std::sync::Once,
}

impl Cleanup {
    fn run(&self) {
        self.done.call_once(|| {
            if let Err(e) = self
                .control
                .block_on(self.decision_log.shutdown(DRAIN_TIMEOUT))
            {
                tracing::warn!(
                    "decision log not fully drained at shutdown ({e}); the rest is in its spool"
                );
            }
            // Unused budget leases go back and the key spend is written.
            self.control.block_on(self.keyring.shutdown(DRAIN_TIMEOUT));
            self.control.block_on(self.store.close());
            tracing::info!("dualrouter stopped");
        });
    }
}

/// What the drain watcher waits for.
struct Drain {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Counts the client connections open.
    admission: Arc<dualrouter_proxy::Admission>,
    /// `server.grace_period_seconds`: the least time before exiting.
    min_grace: Duration,
    /// `server.drain_linger_ms`: the most time idle keep-alive connections are waited for.
    linger: Duration,
}

impl Drain {
    /// Whether the process may exit `elapsed` after the signal: nothing in flight, the least
    /// grace over, and no client connection left open (or the linger over: the connections
    /// left are idle, and their clients have had the time to send and get `Connection: close`).
    fn done(&self, elapsed: Duration) -> bool {
        let busy = self.in_flight.load(std::sync::atomic::Ordering::SeqCst);
        busy == 0
            && elapsed >= self.min_grace
            && (self.admission.open() == 0 || elapsed >= self.linger)
    }
}

/// After SIGTERM or SIGQUIT Pingora stops accepting and waits out its grace period (the drain
/// bound) before cancelling what is in flight. This watcher ends the process as soon as the
/// drain is [done](Drain::done), so a quiet proxy stops at once and a busy one lets its
/// streams finish.
fn exit_when_drained(
    mut phases: tokio::sync::broadcast::Receiver<pingora::server::ExecutionPhase>,
    drain: Drain,
    cleanup: Arc<Cleanup>,
) {
    use pingora::server::ExecutionPhase;
    let spawned = std::thread::Builder::new()
        .name("dualrouter-drain".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let started = std::time::Instant::now();
                    tracing::info!(
                        in_flight = drain.in_flight.load(std::sync::atomic::Ordering::SeqCst),
                        connections = drain.admission.open(),
                        "draining: waiting for requests in flight and open connections"
                    );
                    loop {
                        if drain.done(started.elapsed()) {
                            tracing::info!(
                                connections_left_idle = drain.admission.open(),
                                "drained"
                            );
                            cleanup.run();
                            std::process::exit(0);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no drain watcher ({e}); shutdown waits out the whole grace period");
    }
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

/// A port chosen for a port-0 `listen`, kept bound (never listening) while the process runs.
///
/// Pingora binds its listener itself, later, from the address. A port merely picked and let go
/// could meanwhile be handed by the kernel to another program binding port 0, and the address
/// reported in the ready file would then reach that program. This socket, bound with
/// `SO_REUSEADDR` and never listening, keeps the kernel from handing the port to anyone binding
/// port 0, while Pingora's own bind (also `SO_REUSEADDR`) and listen succeed beside it.
struct PortHold {
    _socket: tokio::net::TcpSocket,
}

/// Resolves port 0 to a free port, held by the returned `PortHold`; a concrete port as is.
fn concrete_port(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Option<PortHold>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok((socket.local_addr()?, Some(PortHold { _socket: socket })))
}

/// `dualrouter route`: the decision the proxy would make for a prompt; nothing is sent upstream.
pub fn route_command(args: &crate::cli::RouteArgs) -> anyhow::Result<()> {
    // It serves nothing: the admin token, client keys and unset provider keys are not needed.
    let config = Arc::new(config::load_with(
        &args.config,
        config::validated::Secrets::IfSet,
    )?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::new()?);
    let decision = rt.block_on(async {
        // The store is the source of truth for policies; the config's seed them.
        let store = store::open_and_seed(&config.database, &config.policies).await?;
        // The models `serve` would know: the config's, the discovered ones, the plugins'.
        let plugins =
            dualrouter_plugins::start(&config.plugins, &dualrouter_plugins::PluginMetrics::new()?)?;
        let discovered = crate::live::discover(&config).await;
        // Built as `serve` builds a generation: the store's active checkpoint, or the config's.
        let (router, _) =
            crate::live::build_router(&config, &store, plugins, &discovered, None, metrics).await?;
        store.close().await;
        let conversation = dualrouter_core::conversation::Conversation::from_prompt(&args.prompt);
        let opts = dualrouter_routing::RouteOptions {
            max_cost_per_mtok: args.max_cost,
            ..Default::default()
        };
        anyhow::Ok(router.route(&conversation, &opts).await?)
    })?;
    let id = uuid::Uuid::now_v7().to_string();
    let decision = match decision {
        Ok(d) => d,
        Err(none) => anyhow::bail!("{none}"),
    };
    if args.json {
        println!("{}", dualrouter_proxy::decision_json(&id, &decision));
        return Ok(());
    }
    let r = &decision.route;
    println!("{}", decision.reasoning);
    println!();
    println!("decision    {id}");
    println!(
        "route       {} ({}, confidence {:.2})",
        r.name(),
        r.source.as_str(),
        r.confidence
    );
    println!("policy      {}", decision.policy);
    println!("selected    {}", decision.selected_model);
    println!("fallbacks   [{}]", decision.fallbacks.join(", "));
    println!(
        "checkpoint  {}",
        decision.checkpoint_version.map_or_else(
            || config.mirt.checkpoint.display().to_string(),
            |v| format!("v{v}")
        )
    );
    println!();
    println!(
        "  {:<28} {:>7} {:>12} {:>8}",
        "candidate", "P", "$/Mtok", "score"
    );
    for c in &decision.candidates {
        println!(
            "  {:<28} {:>7.3} {:>12.4} {:>8.3}{}",
            c.model,
            c.p_success,
            c.cost_per_mtok,
            c.score,
            if c.cold { "  (prior)" } else { "" }
        );
    }
    for e in &decision.excluded {
        println!("  {:<28} left out: {}", e.model, e.reason.replace('_', " "));
    }
    let steps: Vec<String> = decision
        .latencies_ms
        .iter()
        .map(|(k, v)| format!("{k} {v:.2} ms"))
        .collect();
    println!();
    println!("latency     {}", steps.join(", "));
    Ok(())
}
