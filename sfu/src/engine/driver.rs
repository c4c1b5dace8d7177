//! The thin driver: the sockets and the clock around a sans-I/O [`Engine`].
//!
//! The engine decides; this loop only waits for what can happen next — a
//! datagram on the media port, an ICE-TCP packet (from the listener's and
//! connections' tasks, `tcp.rs`), a command from an [`crate::Sfu`] handle,
//! or the engine's next deadline — hands it to the engine with the time it
//! happened, and sends the datagrams the engine then has for the UDP socket.
//! A test drives the same engine with in-memory peers and a clock of its own
//! (`tests.rs`).

use super::*;

/// Runs `engine` on `sockets` until a shutdown command or every handle is gone.
pub(crate) async fn run(mut engine: Engine, sockets: Sockets, mut commands: mpsc::Receiver<Command>) {
    let socket = sockets.udp;
    let mut tcp_events = sockets.tcp.map(|(listener, _)| {
        tcp::spawn_listener(
            listener,
            engine.config.tcp_max_connections,
            engine.config.tcp_idle_timeout,
        )
    });
    let mut buf = vec![0u8; 2048];
    let mut cmsg = arrival::cmsg_buffer();
    arrival::enable(&socket);
    // One timer, re-armed only when the deadline moves: creating a fresh
    // `Sleep` per datagram costs a timer-wheel insert and removal each time.
    let mut armed = engine.poll_timeout();
    let sleep = tokio::time::sleep_until(armed.into());
    tokio::pin!(sleep);
    loop {
        let deadline = engine.poll_timeout();
        if deadline != armed {
            armed = deadline;
            sleep.as_mut().reset(armed.into());
        }
        let wake = tokio::select! {
            r = socket.readable() => Wake::Readable(r.is_ok()),
            Some(ev) = async {
                match tcp_events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Tcp(ev),
            cmd = commands.recv() => Wake::Command(cmd),
            _ = &mut sleep => Wake::Timer,
        };
        // The turn is the work, from here: not the wait before it.
        let turn_started = Instant::now();
        match wake {
            Wake::Readable(ok) => {
                if ok {
                    // What is queued, up to 65 datagrams before the
                    // bookkeeping below, each at the time it arrived.
                    for _ in 0..65 {
                        match arrival::try_recv(&socket, &mut buf, &mut cmsg) {
                            Ok((n, from, at)) => engine.handle_datagram(at, from, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
            }
            Wake::Tcp(ev) => {
                engine.handle_tcp_event(Instant::now(), ev);
                if let Some(rx) = tcp_events.as_mut() {
                    for _ in 0..64 {
                        match rx.try_recv() {
                            Ok(ev) => engine.handle_tcp_event(Instant::now(), ev),
                            Err(_) => break,
                        }
                    }
                }
            }
            Wake::Command(Some(Command::Shutdown(done))) => {
                engine.shutdown();
                engine.flush(Instant::now());
                send(&socket, &mut engine);
                let _ = done.send(());
                return;
            }
            Wake::Command(Some(cmd)) => {
                engine.handle_command(Instant::now(), cmd);
                engine.publish_load();
            }
            Wake::Command(None) => {
                engine.shutdown();
                engine.flush(Instant::now());
                send(&socket, &mut engine);
                return;
            }
            Wake::Timer => {
                engine.handle_timeout(Instant::now());
                engine.publish_load();
                // Re-arm even if the next deadline equals the last one.
                armed = engine.poll_timeout();
                sleep.as_mut().reset(armed.into());
            }
        }
        let handled = turn_started.elapsed();
        engine.flush(Instant::now());
        send(&socket, &mut engine);
        let took = turn_started.elapsed();
        if took >= SLOW_TURN {
            engine.counters.slow_turns += 1;
            // Every participant's packets wait while one turn runs.
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                handling_ms = handled.as_millis() as u64,
                "slow engine turn"
            );
        }
    }
}

/// What woke the loop.
enum Wake {
    /// The media socket is readable (or reported an error: `false`).
    Readable(bool),
    Tcp(tcp::TcpEvent),
    /// A command, or `None` when every handle is gone.
    Command(Option<Command>),
    Timer,
}

/// Writes the engine's datagrams into the socket buffer without waiting; a
/// full buffer is loss, which RTP and ICE recover from.
fn send(socket: &UdpSocket, engine: &mut Engine) {
    while let Some(t) = engine.poll_transmit() {
        let _ = socket.try_send_to(&t.data, t.to);
    }
}
