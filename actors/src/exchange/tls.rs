//! Mutual TLS on the exchange: the node's settings (replaceable on SIGHUP), the hub's blocking
//! handshake, and a rustls connection driven over a glommio socket once a core owns it.
//!
//! The hub accepts on a thread of its own and must read a stream's Hello (inside TLS) before it
//! knows which core takes the stream, so it runs the handshake with rustls' blocking API on the
//! std socket and hands the core the socket *and* the rustls connection: plaintext rustls
//! already decrypted behind the Hello stays in the connection and is read first. A core then
//! drives the connection over the nonblocking socket with [`Link`], which the producer shares
//! between its writing task and the task that reads credits (each poll borrows it briefly;
//! glommio wakes readers and writers of one socket separately).
//!
//! Who may connect: a peer whose certificate chains to the cluster CA (both sides check) and
//! names the host of a member (`ExchangeTls::is_member`); the consumer also takes a server
//! certificate that names the dialed address.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DigitallySignedStruct,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};
use wire_net::tls::{read_certs, read_key, ClientCerts, TlsFileError};

pub(crate) use crate::maybe_tls::MaybeTls;

/// Whether a certificate (already chained to the cluster CA) names the host of a member.
pub type MemberCheck = Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>;

/// A node's exchange TLS: what the hub serves and what producers dial with. Connections made
/// after [`ExchangeTls::replace`] use the new configurations; open ones keep theirs.
pub struct ExchangeTls {
    server: RwLock<Arc<ServerConfig>>,
    client: RwLock<Arc<ClientConfig>>,
    is_member: MemberCheck,
}

impl std::fmt::Debug for ExchangeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeTls")
    }
}

impl ExchangeTls {
    /// Reads the node's certificate and key and the cluster CA (errors name the flag and the
    /// file): the hub serves them, requiring a client certificate from the CA, and producers
    /// dial with them; `is_member` says whether a peer's certificate names a member.
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: &Path,
        is_member: MemberCheck,
    ) -> Result<ExchangeTls, TlsFileError> {
        let (server, client) = configs(cert, key, client_ca, &is_member)?;
        Ok(ExchangeTls {
            server: RwLock::new(server),
            client: RwLock::new(client),
            is_member,
        })
    }

    /// Reads the files again; new connections use them from now on (on an error nothing
    /// changes).
    pub fn reload(&self, cert: &Path, key: &Path, client_ca: &Path) -> Result<(), TlsFileError> {
        let (server, client) = configs(cert, key, client_ca, &self.is_member)?;
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = server;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    /// The hub's server configuration now (client certificates required, the exchange's
    /// ALPN).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn client(&self) -> Arc<ClientConfig> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes an accepted socket through the server handshake (blocking, bounded by the
    /// socket's timeouts) and checks that the peer is a member.
    pub(crate) fn accept(
        &self,
        sock: &mut std::net::TcpStream,
    ) -> Result<ServerConnection, String> {
        let mut conn = ServerConnection::new(self.server_config()).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(sock)
                .map_err(|err| explain(&err, "producing"))?;
        }
        let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
            return Err("the peer sent no client certificate".to_string());
        };
        if !(self.is_member)(cert) {
            return Err(
                "the peer's certificate is from the cluster CA but names no member's host"
                    .to_string(),
            );
        }
        Ok(conn)
    }

    /// Dials `peer` (blocking) and takes the connection through the client handshake.
    pub(crate) fn connect_blocking(
        &self,
        sock: &mut std::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> io::Result<ClientConnection> {
        let mut conn = ClientConnection::new(self.client(), ServerName::from(peer.ip()))
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(sock)?;
        }
        Ok(conn)
    }
}

/// The ALPN protocol name of the exchange.
const ALPN: &[u8] = b"wire-exchange/1";

/// The hub's and the producers' configurations. No session tickets or resumption: every
/// stream is a connection of its own and nothing resumes.
fn configs(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    is_member: &MemberCheck,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsFileError> {
    let server = wire_net::tls::server_config(cert, key, client_ca, ClientCerts::Required)?;
    let mut server = (*server).clone();
    server.send_tls13_tickets = 0;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut roots = RootCertStore::empty();
    for ca in read_certs("--tls-client-ca", client_ca)? {
        roots.add(ca).map_err(|err| TlsFileError {
            flag: "--tls-client-ca".to_string(),
            path: client_ca.display().to_string(),
            message: format!("not a usable CA certificate: {err}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let file_error = |flag: &str, path: &Path, message: String| TlsFileError {
        flag: flag.to_string(),
        path: path.display().to_string(),
        message,
    };
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| file_error("--tls-client-ca", client_ca, err.to_string()))?;
    let verifier = MemberVerifier {
        inner,
        is_member: MemberCheckDebug(is_member.clone()),
    };
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| file_error("--tls-cert", cert, err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(read_certs("--tls-cert", cert)?, read_key("--tls-key", key)?)
        .map_err(|err| file_error("--tls-key", key, format!("does not fit --tls-cert: {err}")))?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(server), Arc::new(client)))
}

/// Verifies the server's certificate with the configuration's own (web PKI) verifier, taking
/// a certificate that is not valid for the dialed name when it names a member.
#[derive(Debug)]
struct MemberVerifier {
    inner: Arc<WebPkiServerVerifier>,
    is_member: MemberCheckDebug,
}

struct MemberCheckDebug(MemberCheck);

impl std::fmt::Debug for MemberCheckDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberCheck")
    }
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if (self.is_member.0)(end_entity) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A failed handshake or TLS read, for a person: what rustls said and the likely cause.
/// `side` is who the other end is ("producing" or "consuming") node.
pub(crate) fn explain(error: &io::Error, side: &str) -> String {
    use rustls::Error as Tls;
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) else {
        return error.to_string();
    };
    let hint = match tls {
        Tls::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(" (the {side} node's certificate is not signed by this node's cluster CA, --tls-client-ca)"),
        Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!(" (the {side} node's certificate has expired)"),
        Tls::InvalidMessage(_) => format!(
            " (the {side} node does not speak TLS on the exchange: is its TLS off?)"
        ),
        Tls::NoCertificatesPresented => {
            format!(" (the {side} node presented no certificate: is its TLS off?)")
        }
        Tls::AlertReceived(_) => format!(
            " (the {side} node refused the handshake: are both nodes' certificates from the same cluster CA?)"
        ),
        _ => String::new(),
    };
    format!("TLS: {tls}{hint}")
}

/// A socket the hub accepted and read a Hello from: plain, or with its TLS connection.
#[derive(Debug)]
pub struct Arrived {
    pub(crate) sock: std::net::TcpStream,
    pub(crate) tls: Option<Box<ServerConnection>>,
}

impl Arrived {
    /// Reads (blocking) until the producer closes the stream, at most `timeout` per read.
    pub fn read_to_end(mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        self.sock.set_nonblocking(false)?;
        self.sock.set_read_timeout(Some(timeout))?;
        let mut bytes = Vec::new();
        match self.tls.as_deref_mut() {
            None => {
                self.sock.read_to_end(&mut bytes)?;
            }
            Some(conn) => {
                let mut stream = rustls::Stream::new(conn, &mut self.sock);
                match stream.read_to_end(&mut bytes) {
                    Ok(_) => {}
                    // A peer that closed without close_notify has still sent what it sent.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(bytes)
    }

    /// The socket as a link on this core (the socket turns nonblocking).
    pub(crate) fn into_link(self) -> io::Result<Link> {
        let sock = glommio_stream(self.sock)?;
        Ok(match self.tls {
            None => Link::Plain(sock),
            Some(conn) => Link::tls(sock, Connection::Server(*conn)),
        })
    }
}

/// Writes `bytes` to `peer` over a fresh connection (TLS when `tls` is set) and closes it.
pub fn send_blocking(
    tls: Option<&ExchangeTls>,
    peer: std::net::SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut sock = std::net::TcpStream::connect_timeout(&peer, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    match tls {
        None => sock.write_all(bytes),
        Some(tls) => {
            let mut conn = tls.connect_blocking(&mut sock, peer)?;
            let mut stream = rustls::Stream::new(&mut conn, &mut sock);
            stream.write_all(bytes)?;
            stream.conn.send_close_notify();
            stream.flush()
        }
    }
}

/// A connected std socket as a glommio stream on this core.
pub(crate) fn glommio_stream(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from(socket2::Socket::from(stream)))
}

/// One end of an exchange connection on a core: a plain glommio socket, or a rustls
/// connection over one, shared by the tasks that hold a clone.
pub(crate) type Link = MaybeTls<SharedTls>;

/// A rustls connection and its socket, shared by the tasks of one link (each poll borrows it
/// briefly).
#[derive(Clone)]
pub(crate) struct SharedTls(Rc<RefCell<TlsIo>>);

impl MaybeTls<SharedTls> {
    fn tls(sock: TcpStream, conn: Connection) -> Link {
        Link::Tls(SharedTls(Rc::new(RefCell::new(TlsIo {
            sock,
            conn,
            closing: false,
        }))))
    }

    /// A second handle on a TLS link (for the task that reads while another writes).
    pub(crate) fn share(&self) -> Option<Link> {
        match self {
            Link::Plain(_) => None,
            Link::Tls(io) => Some(Link::Tls(io.clone())),
        }
    }

    /// Dials with TLS over `sock` (already connected): the client handshake, on this core.
    pub(crate) async fn connect(
        sock: std::net::TcpStream,
        tls: &ExchangeTls,
        peer: std::net::SocketAddr,
    ) -> io::Result<Link> {
        let conn = ClientConnection::new(tls.client(), ServerName::from(peer.ip()))
            .map_err(io::Error::other)?;
        let link = Link::tls(glommio_stream(sock)?, Connection::Client(conn));
        if let Link::Tls(io) = &link {
            futures_lite::future::poll_fn(|cx| io.0.borrow_mut().poll_handshake(cx)).await?;
        }
        Ok(link)
    }
}

/// A rustls connection and its socket.
pub(crate) struct TlsIo {
    sock: TcpStream,
    conn: Connection,
    closing: bool,
}

/// The socket as blocking `Read`/`Write` for rustls: `Pending` becomes `WouldBlock`.
struct SyncIo<'a, 'b> {
    sock: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.sock).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.sock).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Poll::Pending` for a `WouldBlock` error.
fn pending_on_block<T>(result: io::Result<T>) -> Poll<io::Result<T>> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl TlsIo {
    /// Reads TLS records from the socket and decrypts them; `Ok(0)` at the socket's end.
    fn read_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = SyncIo {
            sock: &mut self.sock,
            cx,
        };
        let n = match pending_on_block(self.conn.read_tls(&mut io)) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        if let Err(err) = self.conn.process_new_packets() {
            // Tell the peer why (best effort), then fail.
            let _ = self.conn.write_tls(&mut io);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
        }
        Poll::Ready(Ok(n))
    }

    /// Sends what rustls has encrypted.
    fn write_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = SyncIo {
            sock: &mut self.sock,
            cx,
        };
        pending_on_block(self.conn.write_tls(&mut io))
    }

    /// Sends everything rustls holds encrypted.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.write_io(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.read_io(cx) {
                Poll::Ready(Ok(0)) => {
                    let message = "the node closed the connection during the TLS handshake";
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, message)));
                }
                Poll::Ready(Ok(_)) => {}
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
            match self.read_io(cx) {
                // At the socket's end the reader says whether it was clean (close_notify).
                Poll::Ready(Ok(_)) => {}
                other => return other,
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        loop {
            taken += self.conn.writer().write(&buf[taken..])?;
            match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) if taken == buf.len() => return Poll::Ready(Ok(taken)),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                // What rustls took is sent on the next write or flush.
                Poll::Pending if taken > 0 => return Poll::Ready(Ok(taken)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
        match self.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.sock).poll_close(cx),
            other => other,
        }
    }
}

impl AsyncRead for SharedTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_flush_tls(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_close(cx)
    }
}
