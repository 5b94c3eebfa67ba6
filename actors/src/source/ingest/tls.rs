//! TLS on an ingest port: the node's server configuration, replaceable while the node runs
//! (certificate reload on SIGHUP), and a producer's socket, plain or TLS (rustls driven over
//! the glommio socket by futures-rustls).
//!
//! With TLS on, the first bytes of a connection must be a TLS record; a producer that speaks
//! the ingest protocol in plaintext instead gets a plaintext Error frame saying the port needs
//! TLS, so it learns why rather than reading a TLS alert as a frame.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConfig;
use wire_net::ingest::{ErrorCode, ErrorFrame};
use wire_net::tls::{classify_head, StreamHead};

use crate::maybe_tls::MaybeTls;

/// The TLS settings of a node's ingest ports. Every new connection takes the configuration
/// current when it is accepted; [`IngestTls::replace`] changes it for the connections after.
#[derive(Debug)]
pub struct IngestTls {
    config: RwLock<Arc<ServerConfig>>,
}

impl IngestTls {
    /// Ingest ports serve TLS with `config` (built by `wire_net::tls::server_config`).
    pub fn new(config: Arc<ServerConfig>) -> IngestTls {
        IngestTls {
            config: RwLock::new(config),
        }
    }

    /// New connections use `config` from now on; open ones keep theirs.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A producer's socket after the handshake.
pub(super) type IngestStream = MaybeTls<Box<TlsStream<TcpStream>>>;

/// Why a connection did not become an [`IngestStream`].
pub(super) enum HandshakeError {
    /// The peer spoke plaintext to a TLS port: send it this frame in plaintext, then close.
    Plaintext(TcpStream, ErrorFrame),
    /// The handshake failed or timed out; the socket is gone.
    Failed(String),
}

/// How often a connection that has sent less than a record header looks again.
const PEEK_POLL: Duration = Duration::from_millis(2);

/// Takes `stream` through the TLS handshake when `tls` is set, within `timeout`.
pub(super) async fn handshake(
    stream: TcpStream,
    tls: Option<&IngestTls>,
    timeout: Duration,
) -> Result<IngestStream, HandshakeError> {
    let Some(tls) = tls else {
        return Ok(MaybeTls::Plain(stream));
    };
    let deadline = Instant::now() + timeout;
    let _ = stream.set_read_timeout(Some(timeout));
    match looks_like_tls(&stream, deadline).await {
        Ok(true) => {}
        Ok(false) => {
            let message = "this ingest port requires TLS: connect with TLS (wire-loadgen --ca CA.pem, ClientOptions::tls)";
            let frame = ErrorFrame::new(ErrorCode::ProtocolViolation, 0, message.to_string());
            return Err(HandshakeError::Plaintext(stream, frame));
        }
        Err(err) => return Err(HandshakeError::Failed(err.to_string())),
    }
    let acceptor = futures_rustls::TlsAcceptor::from(tls.current());
    let accepted = futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    });
    match accepted.await {
        Some(Ok(stream)) => Ok(MaybeTls::Tls(Box::new(stream))),
        Some(Err(err)) => Err(HandshakeError::Failed(format!(
            "TLS handshake failed: {err}"
        ))),
        None => Err(HandshakeError::Failed(format!(
            "no TLS handshake within {} ms (hello_timeout_ms)",
            timeout.as_millis()
        ))),
    }
}

/// Whether the connection starts with a TLS handshake record (see [`classify_head`]), once
/// enough bytes have arrived to tell.
async fn looks_like_tls(stream: &TcpStream, deadline: Instant) -> io::Result<bool> {
    let mut head = [0u8; 3];
    loop {
        let n = stream.peek(&mut head).await?;
        if n == 0 {
            let message = "closed before the TLS handshake";
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
        }
        match classify_head(&head[..n]) {
            StreamHead::Tls => return Ok(true),
            StreamHead::Plaintext => return Ok(false),
            StreamHead::NeedMore => {}
        }
        if Instant::now() >= deadline {
            let message = "no TLS handshake in time";
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
        glommio::timer::sleep(PEEK_POLL).await;
    }
}

impl MaybeTls<Box<TlsStream<TcpStream>>> {
    fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Each read of the socket fails with `TimedOut` after `timeout`.
    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Ok(self.tcp().set_read_timeout(timeout)?)
    }

    /// Each write of the socket fails with `TimedOut` after `timeout`.
    pub(super) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Ok(self.tcp().set_write_timeout(timeout)?)
    }

    /// Ends the sending side: TLS's close_notify first (so the producer reads a clean end of
    /// stream), then the TCP half-close.
    pub(super) async fn shutdown_write(&mut self) -> io::Result<()> {
        if let MaybeTls::Tls(tls) = self {
            tls.get_mut().1.send_close_notify();
            tls.flush().await?;
        }
        Ok(self.tcp().shutdown(std::net::Shutdown::Write).await?)
    }

    /// Closes the socket.
    pub(super) async fn close(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(tcp) => tcp.close().await,
            MaybeTls::Tls(tls) => tls.get_mut().0.close().await,
        }
    }
}
