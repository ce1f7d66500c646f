//! `gateway`: starts the registration engine's server.
//!
//! `gateway [--config my.toml] [--check-config]`: the defaults (`config/default.toml`, built
//! in), then the keys `my.toml` sets, then `REGENGINE__SECTION__KEY=value` environment
//! variables.

use anyhow::Context;
use clap::Parser;
use gateway::config::Config;
use std::path::PathBuf;

/// mimalloc: the request path allocates many small objects across threads, where it beats
/// glibc malloc (about a fifth of the server's samples were in malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version = gateway::telemetry::VERSION_LONG, about = "Registration engine server")]
struct Cli {
    /// A configuration file with the keys to change from the defaults (`config/default.toml`
    /// lists every key and is built in); none: the defaults and the environment.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file, environment) as TOML with secrets
    /// redacted, check it, and exit: 0 when it is valid.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let table = gateway::config::load::layered(cli.config.as_deref(), std::env::vars())?;
    if cli.check_config {
        return check_config(table);
    }
    let config = Config::from_table(table)?;
    init_logging(config.log.format, &config.log.filter)?;
    // Per-event series live as long as an idle event stays in memory (telemetry::export).
    let per_event_idle = std::time::Duration::from_secs(config.engine.passivate_after_secs.max(1));
    let metrics = gateway::telemetry::export::Exporter::install(per_event_idle)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = runtime.block_on(gateway::server::run(config, metrics, shutdown_signal()));
    // Don't wait on a blocking task that outlived the shutdown (a slow store flush).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// `--check-config`: the effective configuration on stdout, then whether it is valid.
fn check_config(table: toml::Table) -> anyhow::Result<()> {
    print!("{}", gateway::config::redacted(table.clone()));
    Config::from_table(table)?;
    eprintln!("configuration is valid");
    Ok(())
}

fn init_logging(format: gateway::config::LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("log.filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if format == gateway::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("logging: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
