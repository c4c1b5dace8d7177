//! `janus-browser`: Janus's VideoRoom for browsers behind the link emulator,
//! the comparison side of `tests/bench/network.sh`.
//!
//!   janus-browser --announce-ip 10.77.1.1 --rtp-ports 20000-20019 --http-port 8188 --room 1234
//!
//! Installs Debian's janus when missing (as the capacity benchmark does),
//! starts it with ICE on 127.0.0.1 only, announcing `--announce-ip` in its
//! candidates and using only `--rtp-ports` (the emulator relays each of them
//! from that address to 127.0.0.1), creates the room (two publishers, no
//! bitrate cap), prints `janus ready <api url> room <room>` and runs until
//! SIGTERM or SIGINT.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use telehealth_tests::janus_link::create_room;
use telehealth_tests::janus_server::{ensure_installed, JanusOptions};
use telehealth_tests::JanusServer;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "Janus's VideoRoom for browsers behind the link emulator")]
struct Args {
    /// The address Janus announces in its candidates.
    #[arg(long)]
    announce_ip: IpAddr,
    /// The UDP ports Janus may use, FIRST-LAST.
    #[arg(long, value_name = "FIRST-LAST")]
    rtp_ports: String,
    /// The API's port on 127.0.0.1.
    #[arg(long)]
    http_port: u16,
    /// The room to create.
    #[arg(long, default_value_t = 1234)]
    room: u64,
    /// The janus executable.
    #[arg(long, default_value = "janus")]
    janus_bin: PathBuf,
    /// Keep Janus's configuration and log in this folder.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some((first, last)) = args.rtp_ports.split_once('-') else {
        bail!("--rtp-ports: FIRST-LAST, e.g. 20000-20019");
    };
    let rtp_ports = (
        first.parse().context("--rtp-ports")?,
        last.parse().context("--rtp-ports")?,
    );
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    ensure_installed(&args.janus_bin)?;
    let janus = JanusServer::start(&JanusOptions {
        binary: args.janus_bin.clone(),
        dir: args.dir.clone(),
        announce_ip: Some(args.announce_ip),
        rtp_ports: Some(rtp_ports),
        http_port: Some(args.http_port),
        ..JanusOptions::default()
    })
    .await?;
    create_room(&reqwest::Client::new(), &janus.url, args.room).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "janus ready {} room {} (Janus {})",
            janus.url, args.room, janus.version
        )?;
        out.flush()?;
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(janus);
    Ok(())
}
