//! A glommio socket that is plain or carries TLS, read and written through whichever it is:
//! the dispatch an ingest producer's socket and an exchange link share.
//!
//! A TLS read that ends without close_notify is an end of stream, as on a plain socket: both
//! protocols frame their messages (lengths, and an exchange stream's own `End`), so a cut
//! cannot go unnoticed. Lives on the core that owns the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A socket, plain or with a TLS layer `T` over it.
pub(crate) enum MaybeTls<T> {
    /// No TLS.
    Plain(TcpStream),
    /// TLS (futures-rustls' stream for ingest, the shared rustls driver for the exchange).
    Tls(T),
}

/// A TLS read that ended without close_notify, as an end of stream (as on a plain socket).
fn eof_as_end(read: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    match read {
        Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
        other => other,
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(sock) => Pin::new(sock).poll_read(cx, buf),
            MaybeTls::Tls(tls) => eof_as_end(Pin::new(tls).poll_read(cx, buf)),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(sock) => Pin::new(sock).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(sock) => Pin::new(sock).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(sock) => Pin::new(sock).poll_close(cx),
            MaybeTls::Tls(tls) => Pin::new(tls).poll_close(cx),
        }
    }
}
