//! The gRPC listener's TLS: connections accepted here and taken through the handshake with
//! the node's server configuration current at accept time, so that a SIGHUP reload applies
//! to the next connection. Handshakes run concurrently; one that fails or stalls only drops
//! its own connection.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::tls::NodeTls;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_CONNECTIONS: usize = 64;

/// The stream of TLS connections the gRPC server serves.
pub(super) type TlsIncoming = ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>;

/// Accepts from `listener` until the server drops the stream.
pub(super) fn tls_incoming(listener: TcpListener, tls: NodeTls) -> TlsIncoming {
    let (tx, rx) = tokio::sync::mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.grpc_config());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "gRPC TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
