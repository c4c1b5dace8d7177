//! An acceptor that gives a new connection a deadline for its first bytes.
//!
//! hyper times out a request's headers once they start arriving
//! ([`crate::HEADER_READ_TIMEOUT`]); a connection that sends nothing at all
//! would still hold a socket and a task for as long as it likes. Here it gets
//! the same time to say anything, or it is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct FirstBytes<A> {
    pub inner: A,
    pub within: Duration,
}

impl<A, S> Accept<TcpStream, S> for FirstBytes<A>
where
    A: Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let (inner, within) = (self.inner.clone(), self.within);
        Box::pin(async move {
            // (`readable()` may report a new socket ready before anything arrived.)
            match tokio::time::timeout(within, stream.peek(&mut [0u8; 1])).await {
                Ok(Ok(_)) => inner.accept(stream, service).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "nothing sent")),
            }
        })
    }
}
