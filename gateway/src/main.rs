//! `gateway`: starts the registration engine's server.
//!
//! `gateway [--config config/default.toml]`; every setting can be overridden with
//! `REGENGINE__SECTION__KEY=value` environment variables.

use anyhow::Context;
use clap::Parser;
use gateway::config::Config;
use std::path::PathBuf;

/// mimalloc: the request path allocates many small objects across threads, where it beats
/// glibc malloc (about a fifth of the server's samples were in malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Registration engine server")]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config, std::env::vars()).map_err(anyhow::Error::msg)?;
    init_logging(config.log.format, &config.log.filter)?;
    let metrics = gateway::server::install_metrics()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = runtime.block_on(gateway::server::run(config, metrics, shutdown_signal()));
    // Don't wait on a blocking task that outlived the shutdown (a slow store flush).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
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
