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
    /// Ask the server this configuration describes whether it is ready (`GET /readyz` on
    /// `http.admin_bind` if set, else on `http.bind`; a wildcard address is asked on loopback)
    /// and exit 0 if it answers 200, 1 otherwise: the container image's HEALTHCHECK, with no
    /// HTTP client in the image.
    #[arg(long)]
    probe_ready: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let table = gateway::config::load::layered(cli.config.as_deref(), std::env::vars())?;
    if cli.check_config {
        return check_config(table);
    }
    let config = Config::from_table(table)?;
    if cli.probe_ready {
        let addr = config.http.admin_addr().unwrap_or(config.http.bind);
        match probe_ready(addr) {
            Ok(()) => return Ok(()),
            Err(why) => {
                eprintln!("not ready: {why}");
                std::process::exit(1);
            }
        }
    }
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

/// `--probe-ready`: one `GET /readyz` over a plain socket, 2 s for each step.
fn probe_ready(mut addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let step = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, step)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(step))?;
    stream.set_write_timeout(Some(step))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    // The status line is all that matters: at most 64 bytes of it.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    let status = String::from_utf8_lossy(&head[..read]);
    let status = status.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 200"),
        "{addr} answered {status:?}"
    );
    Ok(())
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
