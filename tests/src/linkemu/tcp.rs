//! TCP relaying: each accepted connection is piped to a new connection to
//! the upstream. TCP feels only blackouts and handovers: during a blackout
//! both directions stall (at most one read buffer is held; the kernel's
//! windows fill and the peers wait, as over a dead radio with TCP
//! retransmitting), and a connection accepted during one is not connected
//! upstream until it ends; a handover resets both sides.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::{LinkState, Links, PeerKey, Shutdown};

/// How much of a stream the relay reads at once (and so holds at most per
/// direction during a blackout).
const CHUNK: usize = 16 * 1024;

/// One TCP listener and its upstream.
pub(crate) struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    upstream_ip: IpAddr,
    links: Arc<Links>,
}

impl Listener {
    pub(crate) fn new(
        listener: TcpListener,
        upstream: SocketAddr,
        upstream_ip: IpAddr,
        links: Arc<Links>,
    ) -> io::Result<Listener> {
        let addr = listener.local_addr()?;
        Ok(Listener {
            listener,
            addr,
            upstream,
            upstream_ip,
            links,
        })
    }

    pub(crate) async fn run(self, mut shutdown: Shutdown) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.wait() => return,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let link = self.links.get(client.ip());
                    let handovers = link.handovers.subscribe();
                    let conn = Connection {
                        key: PeerKey {
                            relay: self.addr,
                            client,
                        },
                        upstream: self.upstream,
                        upstream_ip: self.upstream_ip,
                        link,
                    };
                    tokio::spawn(conn.run(stream, handovers, shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors, most likely: pause rather than spin.
                    tracing::warn!(relay = %self.addr, "accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One relayed connection, registered with its link while it lives.
struct Connection {
    key: PeerKey,
    upstream: SocketAddr,
    upstream_ip: IpAddr,
    link: Arc<LinkState>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.link.remove_tcp(self.key);
    }
}

/// Closes a stream with a RST rather than a FIN, as a connection whose
/// path vanished ends (the peer gets "connection reset").
fn reset(stream: TcpStream) {
    // Zero linger makes close() abort; failing to set it leaves a FIN,
    // which still ends the connection.
    let _ = stream.set_zero_linger();
    drop(stream);
}

impl Connection {
    async fn run(self, mut client: TcpStream, mut handovers: watch::Receiver<u64>, mut shutdown: Shutdown) {
        self.link.set_tcp(self.key, *handovers.borrow());
        let _ = client.set_nodelay(true);
        let link = self.link.clone();

        // Accepted during a blackout: hold it until the link is back.
        tokio::select! {
            biased;
            () = shutdown.wait() => return,
            Ok(()) = handovers.changed() => return reset(client),
            () = link.wait_clear() => {}
        }
        let connected = tokio::select! {
            biased;
            () = shutdown.wait() => return,
            Ok(()) = handovers.changed() => return reset(client),
            connected = self.connect() => connected,
        };
        let mut server = match connected {
            Ok(server) => server,
            Err(e) => {
                tracing::debug!(conn = ?self.key, "upstream connect: {e}");
                return reset(client);
            }
        };
        let _ = server.set_nodelay(true);

        let piped = tokio::select! {
            biased;
            () = shutdown.wait() => return,
            Ok(()) = handovers.changed() => Err(io::ErrorKind::ConnectionReset.into()),
            piped = pipe(&mut client, &mut server, &link) => piped,
        };
        match piped {
            // Both sides closed: the FINs were passed on; just close.
            Ok(()) => {}
            // A handover, or one side reset or failed: reset both, so each
            // peer learns the connection is gone.
            Err(e) => {
                tracing::debug!(conn = ?self.key, "reset: {e}");
                reset(client);
                reset(server);
            }
        }
    }

    async fn connect(&self) -> io::Result<TcpStream> {
        let socket = if self.upstream.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(self.upstream_ip, 0))?;
        socket.connect(self.upstream).await
    }
}

/// Copies both ways until both sides have closed, or either fails.
async fn pipe(client: &mut TcpStream, server: &mut TcpStream, link: &LinkState) -> io::Result<()> {
    // Borrowed halves, not owned ones: an owned write half sends a FIN when
    // dropped, which would precede the RST of a reset.
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    tokio::try_join!(
        pump(&mut client_read, &mut server_write, link),
        pump(&mut server_read, &mut client_write, link),
    )?;
    Ok(())
}

/// One direction: read a chunk, write it, each only while the link is up.
async fn pump(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>, link: &LinkState) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        link.wait_clear().await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on; the other direction may go on.
            return to.shutdown().await;
        }
        // The blackout may have started while the read waited.
        link.wait_clear().await;
        to.write_all(&buf[..n]).await?;
    }
}
