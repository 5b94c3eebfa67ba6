//! The client's socket: plain TCP, or TLS over TCP (rustls, blocking).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::ClientError;

/// TLS for an [`super::IngestClient`]: what to trust (and present), and the name the
/// server's certificate must carry.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Built with [`crate::tls::client_config`].
    pub config: Arc<ClientConfig>,
    /// The host dialed (see [`crate::tls::server_name`]).
    pub server_name: ServerName<'static>,
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for ClientTls {}

/// A connected socket, with the TLS handshake done when it is TLS.
#[derive(Debug)]
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Connects to the first address that answers and completes the TLS handshake.
    pub(super) fn open(addrs: &[SocketAddr], tls: Option<&ClientTls>) -> Result<Conn, ClientError> {
        let mut tcp = TcpStream::connect(addrs)?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Conn::Plain(tcp));
        };
        let mut conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(|err| ClientError::Tls(format!("cannot start TLS: {err}")))?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut tcp) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    let message = "TLS handshake failed: the server closed the connection \
                                   (is its port plaintext? then connect without --ca)";
                    return Err(ClientError::Tls(message.into()));
                }
                Ok(_) => {}
                Err(err) => return Err(ClientError::Tls(crate::tls::explain_handshake(&err))),
            }
        }
        Ok(Conn::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref(),
        }
    }

    pub(super) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.tcp().set_nonblocking(nonblocking)
    }

    /// Sends TLS's close_notify (when TLS) and shuts the socket down. A socket the server has
    /// already closed is not an error: the session ended with its Close (the close_notify
    /// sent after it can make the server's kernel answer with a reset, and a reset socket
    /// refuses `shutdown` with `NotConnected`).
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        if let Conn::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        match self.tcp().shutdown(Shutdown::Both) {
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.read(buf),
            Conn::Tls(tls) => match tls.read(buf) {
                // A peer that closes without close_notify (the server's linger) is an end of
                // stream here, as on a plain socket: every frame before it has been read.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.write(buf),
            Conn::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(tcp) => tcp.flush(),
            Conn::Tls(tls) => tls.flush(),
        }
    }
}
