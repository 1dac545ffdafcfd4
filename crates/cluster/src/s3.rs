//! Blobs on an S3-compatible object store through Apache Arrow's `object_store`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use huren_model::ContentHash;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};

use crate::blobs::{blob_key, check, check_put, BlobBackend, BlobError, Put};
use crate::config::S3Settings;

/// How often `put` tries again when the store said "already exists" but the object cannot be
/// seen yet (a concurrent conditional write still in flight: AWS answers 409 to the loser).
const CREATE_RETRIES: u32 = 5;

/// Blobs in one bucket, keyed [`blob_key`] (`blobs/ab/cd/<hex>`).
///
/// **Create-only.** `put` sends `If-None-Match: *` (`PutMode::Create`). An "already exists"
/// answer (412, or 409 for a concurrent conditional write) means the blob is stored: the key
/// is the BLAKE3 hash of the bytes, so whoever wrote it wrote the same bytes. `put` then
/// HEADs the key and accepts the object only if its length is the blob's (else
/// [`BlobError::Conflict`]); if the object is not visible yet (the other writer's PUT is still
/// in flight or failed) it tries again, up to `CREATE_RETRIES` times.
///
/// SeaweedFS 4.48 honours `If-None-Match: *` on PUT (measured by the crate's tests: a second
/// create of an existing key is refused with 412), so on it nothing is ever overwritten. On a
/// store that ignored the header, a create would overwrite; for a content-addressed key that
/// is harmless — both writers write identical bytes, and an object is replaced atomically, so
/// a reader sees the old copy or the new one, both the same blob.
///
/// Reads check the BLAKE3 hash of the whole object before answering.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    /// Streamed uploads at once ([`STREAMS`]), so that a node's memory for them is bounded
    /// however many large data sets arrive together.
    streams: Arc<tokio::sync::Semaphore>,
}

/// Streamed (multipart) uploads a node runs at once; more wait their turn.
pub const STREAMS: usize = 2;

impl S3Blobs {
    /// A client for the bucket (no request is made: a wrong endpoint or key shows on first use).
    pub fn connect(s3: &S3Settings) -> Result<Self, BlobError> {
        // object_store's HTTP client is reqwest on rustls without a built-in provider; https
        // needs the process's provider, which is ring everywhere in huren.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        // Client options first: with_allow_http writes into them, and a later
        // with_client_options would replace that.
        let store = AmazonS3Builder::new()
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            )
            .with_endpoint(s3.endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(s3.allow_http)
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key(&s3.secret_access_key)
            // Path-style requests (`endpoint/bucket/key`): what self-hosted stores serve.
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .build()
            .map_err(|source| BlobError::Store {
                key: format!("(bucket {})", s3.bucket),
                source,
            })?;
        Ok(S3Blobs {
            store: Arc::new(store),
            streams: Arc::new(tokio::sync::Semaphore::new(STREAMS)),
        })
    }

    /// The object store underneath (for tests and tools that need raw access).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The object path of a blob.
    pub fn path(hash: &ContentHash) -> Path {
        Path::from(blob_key(hash))
    }

    /// The stored object's length, `None` when there is none.
    async fn head_size(&self, key: &str, path: &Path) -> Result<Option<u64>, BlobError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(BlobError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }
}

/// Files at least this large are PUT as multipart uploads, streamed from the file.
pub const MULTIPART_FROM: u64 = 16 << 20;
/// The part size of a multipart upload (S3 wants at least 5 MiB but for the last part).
const PART: usize = 5 << 20;
/// Parts in flight at once per upload.
const PARTS_IN_FLIGHT: usize = 1;

impl BlobBackend for S3Blobs {
    /// A file of [`MULTIPART_FROM`] bytes or more is streamed as a multipart upload: read in
    /// 1 MiB pieces, hashed on the way, sent in 5 MiB parts (the least S3 takes), one in
    /// flight while the next fills, so an upload holds about 10–15 MiB, and [`STREAMS`] run
    /// at once. The upload is completed only if the bytes hash to `hash`, else aborted, so
    /// no object appears under a
    /// key its bytes do not match. A multipart upload cannot be create-only, so a stored
    /// object of the right length is looked for first; two nodes uploading the same blob at
    /// once write the same bytes, and S3 replaces an object atomically.
    async fn put_file(
        &self,
        hash: ContentHash,
        path: std::path::PathBuf,
    ) -> Result<Put, BlobError> {
        use tokio::io::AsyncReadExt;
        let key = blob_key(&hash);
        let io = |source| BlobError::Io {
            key: key.clone(),
            path: path.clone(),
            source,
        };
        let len = tokio::fs::metadata(&path).await.map_err(io)?.len();
        if len < MULTIPART_FROM {
            let bytes = tokio::fs::read(&path).await.map_err(io)?;
            return self.put(hash, Bytes::from(bytes)).await;
        }
        let location = Path::from(key.as_str());
        match self.head_size(&key, &location).await? {
            Some(found) if found == len => return Ok(Put::Existed),
            Some(found) => {
                return Err(BlobError::Conflict {
                    key,
                    found,
                    expected: len,
                })
            }
            None => {}
        }
        let store_err = |source| BlobError::Store {
            key: key.clone(),
            source,
        };
        let _turn = self.streams.acquire().await.map_err(|_| BlobError::Io {
            key: key.clone(),
            path: path.clone(),
            source: std::io::Error::other("the upload queue is closed"),
        })?;
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(store_err)?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        let mut hasher = huren_model::ContentHasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let read = async {
            loop {
                let n = file.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok::<_, BlobError>(());
                }
                hasher.update(&buf[..n]);
                w.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_err)?;
                w.write(&buf[..n]);
            }
        }
        .await;
        let actual = hasher.finish();
        if let Err(e) = read {
            let _ = w.abort().await;
            return Err(e);
        }
        if actual != hash {
            let _ = w.abort().await;
            return Err(BlobError::WrongBytes { key, actual });
        }
        w.finish().await.map_err(store_err)?;
        Ok(Put::Created)
    }

    async fn put(&self, hash: ContentHash, bytes: Bytes) -> Result<Put, BlobError> {
        let key = blob_key(&hash);
        check_put(&key, &hash, &bytes)?;
        let path = Path::from(key.as_str());
        let expected = bytes.len() as u64;
        let mut attempt = 0;
        loop {
            let payload = PutPayload::from_bytes(bytes.clone());
            match self
                .store
                .put_opts(&path, payload, PutMode::Create.into())
                .await
            {
                Ok(_) => return Ok(Put::Created),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    match self.head_size(&key, &path).await? {
                        Some(found) if found == expected => return Ok(Put::Existed),
                        Some(found) => {
                            return Err(BlobError::Conflict {
                                key,
                                found,
                                expected,
                            })
                        }
                        None if attempt < CREATE_RETRIES => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                        None => {
                            return Err(BlobError::Store {
                                key: key.clone(),
                                source: object_store::Error::Generic {
                                    store: "S3",
                                    source: format!(
                                    "`already exists` but no object after {CREATE_RETRIES} tries"
                                )
                                    .into(),
                                },
                            })
                        }
                    }
                }
                Err(source) => return Err(BlobError::Store { key, source }),
            }
        }
    }

    async fn get(&self, hash: ContentHash) -> Result<Option<Bytes>, BlobError> {
        let key = blob_key(&hash);
        let path = Path::from(key.as_str());
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(BlobError::Store { key, source }),
        };
        let bytes = got.bytes().await.map_err(|source| BlobError::Store {
            key: key.clone(),
            source,
        })?;
        check(&key, &hash, &bytes)?;
        Ok(Some(bytes))
    }

    async fn exists(&self, hash: ContentHash) -> Result<bool, BlobError> {
        let key = blob_key(&hash);
        let path = Path::from(key.as_str());
        Ok(self.head_size(&key, &path).await?.is_some())
    }

    async fn delete(&self, hash: ContentHash) -> Result<(), BlobError> {
        let key = blob_key(&hash);
        let path = Path::from(key.as_str());
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(BlobError::Store { key, source }),
        }
    }

    async fn list_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ContentHash>, BlobError> {
        use futures::TryStreamExt;
        let prefix = Path::from("blobs");
        let mut listing = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|source| BlobError::Store {
                key: "blobs/ (listing)".into(),
                source,
            })?
        {
            if meta.last_modified >= cutoff {
                continue;
            }
            let Some(name) = meta.location.filename() else {
                continue;
            };
            // Only a key that is the blob key of its own name.
            if let Ok(h) = format!("blake3:{name}").parse::<ContentHash>() {
                if blob_key(&h) == meta.location.as_ref() {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}
