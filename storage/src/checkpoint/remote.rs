//! The checkpoint store's URL, and its S3 side.
//!
//! A checkpoint store is a directory (`file:///abs/dir` or a plain path) or a prefix of an
//! S3-compatible bucket (`s3://bucket/prefix`). An S3 store keeps the same layout as a
//! directory (`<prefix>/chk-<id>/<file>`); the checkpoint is written to a local staging
//! directory first and then uploaded, the manifest last and only if absent, so a manifest's
//! presence in the bucket means every file of its checkpoint is there.
//!
//! The S3 client (the `object_store` crate) is async: it runs on one small tokio runtime of its
//! own, and [`Remote`]'s methods block the calling thread (the coordinator calls them from
//! tokio's blocking pool, a job from its own thread), each within a deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_lite::StreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::CheckpointError;

/// How long one store operation (an upload, a listing, a download) may take in all.
const OPERATION_DEADLINE: Duration = Duration::from_secs(120);
/// How long one HTTP request may take, and its connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a pipeline's checkpoints go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory (local or a shared mount).
    Dir(PathBuf),
    /// A prefix of an S3-compatible bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `file:///abs/dir`, a plain path, or `s3://bucket/prefix`.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        let bad = |why: &str| format!("checkpoint store `{text}`: {why}");
        let Some((scheme, rest)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(bad(
                    "empty: give a directory, file:///DIR or s3://BUCKET/PREFIX",
                ));
            }
            return Ok(StoreUrl::Dir(PathBuf::from(text)));
        };
        match scheme {
            "file" if rest.starts_with('/') => Ok(StoreUrl::Dir(PathBuf::from(rest))),
            "file" => Err(bad(
                "a file URL names an absolute path, with three slashes: file:///DIR",
            )),
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket: use s3://BUCKET/PREFIX"));
                }
                let valid = (3..=63).contains(&bucket.len())
                    && bucket.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    });
                if !valid {
                    return Err(bad(&format!(
                        "`{bucket}` is not a bucket name (3 to 63 lower-case letters, digits, `-` and `.`)"
                    )));
                }
                let prefix = prefix.trim_matches('/');
                if prefix.split('/').any(|part| part == "." || part == "..") {
                    return Err(bad("the prefix may not hold `.` or `..`"));
                }
                Ok(StoreUrl::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                })
            }
            other => Err(bad(&format!(
                "unknown scheme `{other}`: use a directory, file:///DIR or s3://BUCKET/PREFIX"
            ))),
        }
    }

    /// The store of one pipeline under this one: a subdirectory, or a longer prefix.
    pub fn join(&self, name: &str) -> StoreUrl {
        match self {
            StoreUrl::Dir(dir) => StoreUrl::Dir(dir.join(name)),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => StoreUrl::S3 {
                bucket: bucket.clone(),
                prefix: name.to_string(),
            },
            StoreUrl::S3 { bucket, prefix } => StoreUrl::S3 {
                bucket: bucket.clone(),
                prefix: format!("{prefix}/{name}"),
            },
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Dir(dir) => write!(f, "{}", dir.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// What the bucket holds of one checkpoint directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteDir {
    /// Its manifest is there: the checkpoint completed.
    pub manifest: bool,
    /// It was retired (kept for the files newer checkpoints read).
    pub retired: bool,
}

/// An S3 checkpoint store: a bucket and a prefix, reached with the `AWS_*` environment.
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// The runtime the S3 client runs on: one worker, never dropped.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("wire-store")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Remote {
    /// A client for `s3://bucket/prefix`, configured from `AWS_ENDPOINT_URL`, `AWS_REGION`
    /// (default `us-east-1`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_ALLOW_HTTP` (needed for an `http://` endpoint). Nothing is sent yet.
    pub fn connect(bucket: &str, prefix: &str) -> Result<Remote, String> {
        // Two providers are built in (ring for gRPC, aws-lc-rs for object_store): without a
        // process default, the HTTP client cannot be made. An error means one is set already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = StoreUrl::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
        .to_string();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            // Set key by key: replacing the client options would drop AWS_ALLOW_HTTP.
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", REQUEST_TIMEOUT.as_secs()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}s", CONNECT_TIMEOUT.as_secs()),
            );
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        Ok(Remote {
            url,
            store: Arc::new(store),
            prefix: prefix.to_string(),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, dir: &str, file: &str) -> Key {
        let text = if self.prefix.is_empty() {
            format!("{dir}/{file}")
        } else {
            format!("{}/{dir}/{file}", self.prefix)
        };
        Key::from(text)
    }

    fn error(&self, reason: impl fmt::Display) -> CheckpointError {
        CheckpointError::Store {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `future` on the store's runtime and waits for it, within the deadline.
    fn block<T: Send + 'static>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = Result<T, CheckpointError>> + Send + 'static,
    ) -> Result<T, CheckpointError> {
        let runtime = runtime().map_err(|e| self.error(e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let task = runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        match rx.recv_timeout(OPERATION_DEADLINE) {
            Ok(result) => result,
            Err(_) => {
                task.abort();
                Err(self.error(format!("{what}: no answer within {OPERATION_DEADLINE:?}")))
            }
        }
    }

    /// Uploads the files `names` of local checkpoint directory `dir` (`chk-<id>`), then
    /// `manifest` as its manifest, only if the bucket holds none yet.
    pub fn upload(
        &self,
        dir: &Path,
        names: &[String],
        manifest: &[u8],
    ) -> Result<(), CheckpointError> {
        let dir_name = file_name(dir);
        let uploads: Vec<(PathBuf, Key)> = names
            .iter()
            .map(|name| (dir.join(name), self.key(&dir_name, name)))
            .collect();
        let manifest_key = self.key(&dir_name, super::MANIFEST);
        let manifest = PutPayload::from(manifest.to_vec());
        let (store, url) = (self.store.clone(), self.url.clone());
        self.block("upload", async move {
            let error = |reason: String| CheckpointError::Store {
                url: url.clone(),
                reason,
            };
            for (path, key) in uploads {
                let data = std::fs::read(&path).map_err(|e| CheckpointError::io(&path, e))?;
                store
                    .put(&key, PutPayload::from(data))
                    .await
                    .map_err(|e| error(format!("uploading {key}: {e}")))?;
            }
            let create = PutOptions::from(PutMode::Create);
            match store.put_opts(&manifest_key, manifest, create).await {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => Err(error(format!(
                    "{manifest_key} exists already: another run wrote this checkpoint"
                ))),
                Err(e) => Err(error(format!("uploading {manifest_key}: {e}"))),
            }
        })
    }

    /// The checkpoint directories in the bucket, by id.
    pub fn dirs(&self) -> Result<BTreeMap<u64, RemoteDir>, CheckpointError> {
        let prefix = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()));
        let store = self.store.clone();
        let url = self.url.clone();
        self.block("listing", async move {
            let mut dirs: BTreeMap<u64, RemoteDir> = BTreeMap::new();
            let mut listing = store.list(prefix.as_ref());
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| CheckpointError::Store {
                    url: url.clone(),
                    reason: format!("listing: {e}"),
                })?;
                let mut parts = meta.location.as_ref().rsplit('/');
                let (Some(file), Some(dir)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Some(id) = super::parse_dir_name(dir) else {
                    continue;
                };
                let entry = dirs.entry(id).or_default();
                entry.manifest |= file == super::MANIFEST;
                entry.retired |= file == super::RETIRED;
            }
            Ok(dirs)
        })
    }

    /// Downloads file `name` of checkpoint directory `dir_name` to `to` (written beside it
    /// under another name, then renamed: a map of an older copy stays valid).
    pub fn download(&self, dir_name: &str, name: &str, to: &Path) -> Result<(), CheckpointError> {
        let key = self.key(dir_name, name);
        let (store, url, to) = (self.store.clone(), self.url.clone(), to.to_path_buf());
        self.block("download", async move {
            let got = store.get(&key).await.map_err(|e| CheckpointError::Store {
                url: url.clone(),
                reason: format!("downloading {key}: {e}"),
            })?;
            let staged = to.with_extension("download");
            let io = |e| CheckpointError::io(&staged, e);
            let mut file = std::fs::File::create(&staged).map_err(io)?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| CheckpointError::Store {
                    url: url.clone(),
                    reason: format!("downloading {key}: {e}"),
                })?;
                file.write_all(&chunk).map_err(io)?;
            }
            file.sync_all().map_err(io)?;
            std::fs::rename(&staged, &to).map_err(|e| CheckpointError::io(&to, e))
        })
    }

    /// Retires checkpoint `id` in the bucket: a `RETIRED` marker, then no manifest.
    pub fn retire(&self, id: u64) -> Result<(), CheckpointError> {
        let dir = super::dir_name(id);
        let (marker, manifest) = (
            self.key(&dir, super::RETIRED),
            self.key(&dir, super::MANIFEST),
        );
        let (store, url) = (self.store.clone(), self.url.clone());
        self.block("retiring", async move {
            let error = |e: object_store::Error| CheckpointError::Store {
                url: url.clone(),
                reason: format!("retiring {dir}: {e}"),
            };
            let note =
                "This checkpoint was retired; newer checkpoints still read its state files.\n";
            store
                .put(&marker, PutPayload::from(note))
                .await
                .map_err(error)?;
            match store.delete(&manifest).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(error(e)),
            }
        })
    }

    /// Deletes every object of checkpoint directory `id`, or of every one with `None`.
    pub fn delete(&self, id: Option<u64>) -> Result<(), CheckpointError> {
        let dir = id.map(super::dir_name);
        let prefix = match (&dir, self.prefix.is_empty()) {
            (Some(dir), true) => Some(Key::from(dir.as_str())),
            (Some(dir), false) => Some(Key::from(format!("{}/{dir}", self.prefix))),
            (None, true) => None,
            (None, false) => Some(Key::from(self.prefix.as_str())),
        };
        let (store, url) = (self.store.clone(), self.url.clone());
        self.block("deleting", async move {
            let error = |e: object_store::Error| CheckpointError::Store {
                url: url.clone(),
                reason: format!("deleting: {e}"),
            };
            let mut listing = store.list(prefix.as_ref());
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(error)?;
                let is_checkpoint = meta
                    .location
                    .as_ref()
                    .rsplit('/')
                    .nth(1)
                    .and_then(super::parse_dir_name)
                    .is_some();
                if is_checkpoint {
                    keys.push(meta.location);
                }
            }
            for key in keys {
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(error(e)),
                }
            }
            Ok(())
        })
    }
}

fn file_name(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_bad_ones_are_refused_with_the_reason() {
        assert_eq!(
            StoreUrl::parse("file:///var/wire/chk"),
            Ok(StoreUrl::Dir("/var/wire/chk".into()))
        );
        assert_eq!(
            StoreUrl::parse("rel/dir"),
            Ok(StoreUrl::Dir("rel/dir".into()))
        );
        let s3 = StoreUrl::parse("s3://wire-chk/prod/run/").expect("s3");
        assert_eq!(
            s3,
            StoreUrl::S3 {
                bucket: "wire-chk".into(),
                prefix: "prod/run".into()
            }
        );
        assert_eq!(s3.join("q5-7").to_string(), "s3://wire-chk/prod/run/q5-7");
        assert_eq!(
            StoreUrl::parse("s3://wire-chk")
                .expect("bucket only")
                .join("q5-7")
                .to_string(),
            "s3://wire-chk/q5-7"
        );
        for (url, why) in [
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://Bad_Bucket/x", "not a bucket name"),
            ("s3://ab/x", "not a bucket name"),
            ("s3://bucket/a/../b", "`..`"),
            ("gs://bucket/x", "unknown scheme `gs`"),
            ("file://relative/dir", "absolute path"),
            ("", "empty"),
        ] {
            let err = StoreUrl::parse(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains(&format!("`{url}`")), "{url}: {err}");
        }
    }
}
