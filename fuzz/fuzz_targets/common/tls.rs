//! Shared by the handshake fuzz targets: a client's bytes fed to a node's rustls server.

/// Feeds `data` to `conn` as what a client sent, until it is used up or rustls refuses it;
/// `plaintext` gets the connection after every read rustls accepted (to read what got through).
pub fn feed(
    conn: &mut rustls::ServerConnection,
    data: &[u8],
    mut plaintext: impl FnMut(&mut rustls::ServerConnection),
) {
    let mut input = data;
    while !input.is_empty() {
        match conn.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if conn.process_new_packets().is_err() {
                    break;
                }
                plaintext(conn);
            }
        }
    }
}
