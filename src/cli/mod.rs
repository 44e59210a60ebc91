//! The command line: one subcommand per job (`docs/operations.md#commands`).

mod classify;
pub mod mirt;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dualrouter",
    version,
    about = "An LLM routing proxy on Pingora"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the admin API and metrics.
    Serve(ServeArgs),
    /// Run the demo upstream alone: an OpenAI-compatible server answering canned text.
    DemoUpstream(DemoArgs),
    /// Fit MIRT on outcome data (CSV/JSONL) and write a checkpoint.
    Train(crate::cli::mirt::TrainArgs),
    /// Routing quality on outcome data: MIRT vs baselines, metrics and plot.
    Eval(crate::cli::mirt::EvalArgs),
    /// Replay an outcome file as traffic: the router learns from the outcomes of the models it
    /// chooses (bandit feedback, refits, guarded activation) and prints its learning curve.
    Replay(crate::cli::mirt::ReplayArgs),
    /// Print the routing decision for a prompt (nothing is sent upstream).
    Route(RouteArgs),
    /// Accuracy and latency of the embedded route classifier on labelled utterances.
    EvalClassifier(classify::EvalClassifierArgs),
    /// Apply the store's migrations (`serve` also does this at start).
    Migrate(MigrateArgs),
    /// Work with WASM plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's world, WIT version, exports, imports and declared models.
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The component file (`.wasm`).
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn plugin_command(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Inspect(args) => {
            let report = dualrouter_plugins::inspect::inspect(&args.file)?;
            let text = if args.json {
                serde_json::to_string_pretty(&report)?
            } else {
                dualrouter_plugins::inspect::render(&report)
            };
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text.trim_end())?;
            if !report.supported {
                anyhow::bail!(
                    "{} is built for {}; this host speaks {}",
                    args.file.display(),
                    report
                        .wit_version
                        .as_deref()
                        .unwrap_or("no dualrouter:plugin version"),
                    report.host_versions.join(", ")
                );
            }
            Ok(())
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The YAML config file whose `database:` to migrate (secrets need not be set).
    #[arg(long, short, env = "DUALROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The database URL (`sqlite://FILE` or `postgres://…`); overrides the config file's.
    #[arg(long, env = "DUALROUTER_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The YAML config file.
    #[arg(
        long,
        short,
        default_value = "config/dualrouter.yaml",
        env = "DUALROUTER_CONFIG"
    )]
    pub config: PathBuf,
    /// Write `{"proxy": "...", "admin": "..."}` here once both listeners are bound.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Take the listening sockets over from a running instance (Pingora's zero-downtime upgrade).
    #[arg(long)]
    pub upgrade: bool,
}

#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// The YAML config file.
    #[arg(
        long,
        short,
        default_value = "config/dualrouter.yaml",
        env = "DUALROUTER_CONFIG"
    )]
    pub config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Price cap, USD per million tokens (as the `x-dualrouter-max-cost` header).
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// The prompt to route.
    pub prompt: String,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// Pause between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` logs as its config's `log:` section says (a config that does not read gets the
    // defaults here and its error from `serve`).
    let log = match &cli.command {
        Command::Serve(args) => dualrouter_core::config::read(&args.config)
            .map(|raw| raw.log)
            .unwrap_or_default(),
        _ => Default::default(),
    };
    crate::logging::init(&log);
    let result = match cli.command {
        Command::Serve(args) => crate::server::serve(args),
        Command::DemoUpstream(args) => crate::demo::run_standalone(
            &args.listen,
            crate::demo::DemoOptions {
                chunk_delay: std::time::Duration::from_millis(args.chunk_delay_ms),
            },
        ),
        Command::Route(args) => crate::server::route_command(&args),
        Command::EvalClassifier(args) => classify::run_cli(&args),
        Command::Migrate(args) => migrate_command(args.config.as_deref(), args.database.as_deref()),
        Command::Train(args) => crate::cli::mirt::run_train(&args),
        Command::Eval(args) => crate::cli::mirt::run_eval(&args),
        Command::Replay(args) => crate::cli::mirt::run_replay(&args),
        Command::Plugin(cmd) => plugin_command(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dualrouter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `dualrouter migrate`: the URL from `--database`, else the config file's `database:` (read
/// without resolving secrets, so provider keys need not be set).
fn migrate_command(config: Option<&std::path::Path>, database: Option<&str>) -> anyhow::Result<()> {
    use dualrouter_store::{redact_url, Store, StoreError, DEFAULT_DATABASE_URL};
    let url = match (database, config) {
        (Some(url), _) => url.to_string(),
        (None, Some(path)) => dualrouter_core::config::read(path)?.database,
        (None, None) => DEFAULT_DATABASE_URL.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        store.close().await;
        Ok::<_, StoreError>(())
    })?;
    tracing::info!(database = %redact_url(&url), "migrations applied");
    Ok(())
}
