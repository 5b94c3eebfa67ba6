//! Bearer tokens: `wire_<id>_<secret>`, the id 8 random bytes and the secret 32, both in hex.
//! The metadata keeps the id and the SHA-256 of the secret; the token itself is shown once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use crate::raft::{AccessRole, MetaCommand, MetaHandle, TokenRecord};
use crate::transport::{propose_anywhere, Dialer};

/// The file in the data directory the founding node writes the first admin token to.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

const PREFIX: &str = "wire_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// How long the founding node tries to record the first admin token.
const FOUNDING_WAIT: Duration = Duration::from_secs(120);

/// A token just made.
pub struct NewToken {
    /// Its id (not secret).
    pub id: String,
    /// The whole token, to give to its holder once.
    pub text: String,
    /// SHA-256 of the secret, for the metadata.
    pub hash: [u8; 32],
}

/// A new random token.
pub fn generate() -> Result<NewToken, String> {
    let random = SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    random
        .fill(&mut id)
        .and_then(|()| random.fill(&mut secret))
        .map_err(|_| "the system random generator failed".to_string())?;
    let id = hex(&id);
    Ok(NewToken {
        text: format!("{PREFIX}{id}_{}", hex(&secret)),
        id,
        hash: hash_secret(&secret),
    })
}

/// The id and secret of `token`, or `None` when it is not a well-formed token.
pub fn parse(token: &str) -> Option<(&str, [u8; SECRET_BYTES])> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    if id.len() != 2 * ID_BYTES || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; SECRET_BYTES];
    // Lower-case hex only, as generated: `from_str_radix` alone would also take `+1` for
    // `01`, so one secret would have several spellings.
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if secret.len() != 2 * SECRET_BYTES || !secret.bytes().all(lower_hex) {
        return None;
    }
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(secret.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((id, bytes))
}

/// SHA-256 of a token's secret.
pub fn hash_secret(secret: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether two hashes are equal, in time that does not depend on where they differ.
pub(super) fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The founding node's first admin token: records it in the metadata (retrying until a leader
/// takes it, for [`FOUNDING_WAIT`] at most), then writes it to `<data_dir>/admin-token` with
/// mode 0600 and logs the path (never the token). Returns the path.
pub async fn found_admin_token(
    meta: &MetaHandle,
    dialer: &Dialer,
    data_dir: &Path,
) -> Result<PathBuf, String> {
    let token = generate()?;
    let command = MetaCommand::CreateToken {
        id: token.id.clone(),
        token: TokenRecord {
            role: AccessRole::Admin,
            hash: token.hash,
            created_at_ms: now_ms(),
            expires_at_ms: None,
            scope: None,
        },
    };
    let deadline = tokio::time::Instant::now() + FOUNDING_WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        // A proposal whose answer was lost may have been applied: then the id is taken by it.
        let recorded = |state: crate::raft::MetaState| {
            state
                .tokens
                .get(&token.id)
                .is_some_and(|t| t.hash == token.hash)
        };
        let done = match propose_anywhere(meta, dialer, command.clone()).await {
            Ok(_) => true,
            Err(err) => {
                last = err;
                meta.read(false).await.is_ok_and(recorded)
            }
        };
        if done {
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            crate::tls::write_new(&path, format!("{}\n", token.text).as_bytes(), true)?;
            tracing::info!(path = %path.display(), id = %token.id, "wrote the founding admin token");
            return Ok(path);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "could not record the founding admin token within {} s: {last}",
        FOUNDING_WAIT.as_secs()
    ))
}
