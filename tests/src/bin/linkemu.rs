//! `linkemu`: the link emulator ([`telehealth_tests::linkemu`]) as a
//! process, for browser tests driven from Node/Playwright.
//!
//!   linkemu --udp 127.0.0.2:5000=127.0.0.1:5000 --tcp 127.0.0.2:8080=127.0.0.1:8080 \
//!           [--upstream-ip 127.0.0.1] [--control 127.0.0.1:0]
//!
//! On start it prints one line, `linkemu control http://ADDR`, then serves
//! the control API ([`telehealth_tests::linkemu::control`]) there until
//! SIGTERM or SIGINT.

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use telehealth_tests::linkemu::{control, LinkEmulator, LinkEmulatorConfig, Relay};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "Relays UDP and TCP through emulated rural 4G links, controlled over HTTP")]
struct Args {
    /// A UDP relay: clients send to LISTEN, datagrams go on to UPSTREAM
    /// (repeatable).
    #[arg(long = "udp", value_name = "LISTEN=UPSTREAM")]
    udp: Vec<Relay>,
    /// A TCP relay: connections to LISTEN are piped to UPSTREAM (repeatable).
    #[arg(long = "tcp", value_name = "LISTEN=UPSTREAM")]
    tcp: Vec<Relay>,
    /// Local address of the upstream sockets: where the server sees
    /// clients come from.
    #[arg(long, default_value = "127.0.0.1")]
    upstream_ip: IpAddr,
    /// Address of the HTTP control API (port 0: any free port; the line
    /// printed on start says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Set up before anything is announced, so a signal is never missed.
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let emulator = LinkEmulator::start(LinkEmulatorConfig {
        udp: args.udp,
        tcp: args.tcp,
        upstream_ip: args.upstream_ip,
    })?;
    let listener = TcpListener::bind(args.control)
        .await
        .with_context(|| format!("binding {}", args.control))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "linkemu control http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    run(listener, emulator, shutdown).await
}

/// Serves the control API until `shutdown`, then stops the relays.
async fn run(
    listener: TcpListener,
    emulator: LinkEmulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, control::app(emulator.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    emulator.shutdown();
    Ok(())
}
