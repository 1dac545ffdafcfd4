//! One blob conformance suite, run against the directory back end and against S3.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use huren_cluster::{blob_key, BlobBackend, BlobError, DirBlobs, Put, S3Blobs};
use huren_model::ContentHash;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::support;

type Fut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the suite needs beyond the interface: damage a stored blob, count the stored objects.
trait Probe: Send + Sync {
    /// Replaces the stored bytes of `hash` with `other`, bypassing the back end.
    fn corrupt(&self, hash: ContentHash, other: Bytes) -> Fut<()>;
    /// How many blob objects are stored (temp files excluded).
    fn count(&self) -> Fut<usize>;
}

fn blob(tag: &str, len: usize) -> (ContentHash, Bytes) {
    let mut v = Vec::with_capacity(len);
    let mut x = blake3::hash(tag.as_bytes()).as_bytes().to_vec();
    while v.len() < len {
        v.extend_from_slice(&x);
        x = blake3::hash(&x).as_bytes().to_vec();
    }
    v.truncate(len);
    (ContentHash::of(&v), Bytes::from(v))
}

/// The suite. Every behaviour both back ends must share.
async fn conformance<B: BlobBackend + 'static>(b: Arc<B>, probe: &dyn Probe) {
    assert_eq!(probe.count().await, 0, "starts empty");

    // Round trip, small and large (1 MiB + 1: over the embedded store's inline limit).
    let (h1, b1) = blob("one", 100);
    let (h2, b2) = blob("two", (1 << 20) + 1);
    let (h0, b0) = blob("empty", 0);
    for (h, b_) in [(h1, &b1), (h2, &b2), (h0, &b0)] {
        b.put(h, b_.clone()).await.expect("put");
        assert_eq!(
            b.get(h).await.expect("get").as_ref(),
            Some(b_),
            "round trip"
        );
        assert!(b.exists(h).await.expect("exists"));
    }

    // Dedup by hash: a second put of the same content succeeds and stores nothing new.
    b.put(h1, b1.clone())
        .await
        .expect("second put of the same blob");
    assert_eq!(probe.count().await, 3, "stored once each");

    // Bytes that are not the hash's are refused by put.
    let e = b.put(h1, b2.clone()).await.expect_err("wrong bytes");
    assert!(matches!(e, BlobError::WrongBytes { .. }), "{e}");

    // Missing → None, not an error; exists false; delete of a missing blob is fine.
    let (hm, _) = blob("missing", 10);
    assert_eq!(b.get(hm).await.expect("get missing"), None);
    assert!(!b.exists(hm).await.expect("exists missing"));
    b.delete(hm).await.expect("delete missing");

    // A damaged object is detected on read, and the error names the key.
    let (hc, bc) = blob("to corrupt", 5000);
    b.put(hc, bc.clone()).await.expect("put");
    let mut other = bc.to_vec();
    other[17] ^= 1;
    probe.corrupt(hc, Bytes::from(other)).await;
    let e = b
        .get(hc)
        .await
        .expect_err("corrupted blob must not be answered");
    match &e {
        BlobError::Corrupt { key, .. } => assert!(key.contains(&hc.hex()), "{e}"),
        other => panic!("expected Corrupt, got {other}"),
    }
    b.delete(hc).await.expect("delete");
    assert!(!b.exists(hc).await.expect("exists after delete"));
    assert_eq!(b.get(hc).await.expect("get after delete"), None);

    // From a file: a large one (S3: a streamed multipart upload) round-trips, a second put
    // finds it, and a file whose bytes are not the hash's is refused and leaves no object.
    let files = tempfile::tempdir().expect("temp dir");
    let (hf, bf) = blob("from a file", (17 << 20) + 3);
    let file = files.path().join("large");
    std::fs::write(&file, &bf).expect("write");
    assert_eq!(
        b.put_file(hf, file.clone()).await.expect("put_file"),
        Put::Created
    );
    assert_eq!(
        b.get(hf).await.expect("get").as_ref(),
        Some(&bf),
        "round trip"
    );
    assert_eq!(
        b.put_file(hf, file.clone()).await.expect("again"),
        Put::Existed
    );
    let (hw, _) = blob("not these bytes", 10);
    let e = b.put_file(hw, file).await.expect_err("wrong bytes");
    assert!(matches!(e, BlobError::WrongBytes { .. }), "{e}");
    assert!(
        !b.exists(hw).await.expect("exists"),
        "no object under a wrong key"
    );
    b.delete(hf).await.expect("delete");

    // Concurrent puts of one blob from 8 tasks all succeed; it is stored once and intact.
    let (hp, bp) = blob("parallel", 300_000);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            let bytes = bp.clone();
            tokio::spawn(async move { b.put(hp, bytes).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("concurrent put");
    }
    assert_eq!(b.get(hp).await.expect("get").as_ref(), Some(&bp));
    assert_eq!(probe.count().await, 4, "h1, h2, h0 and the parallel one");
}

/// Rough round-trip times: `n` put + get of `len` bytes each, median in ms.
async fn timing<B: BlobBackend>(b: &B, label: &str, len: usize, n: usize) {
    let mut puts = Vec::new();
    let mut gets = Vec::new();
    for i in 0..n {
        let (h, bytes) = blob(&format!("timing {label} {len} {i}"), len);
        let t = Instant::now();
        b.put(h, bytes).await.expect("put");
        puts.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        b.get(h).await.expect("get").expect("stored");
        gets.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "TIMING {label}: {len} B, {n} runs: put median {:.2} ms (max {:.2}), get median {:.2} ms (max {:.2})",
        med(&mut puts),
        puts[puts.len() - 1],
        med(&mut gets),
        gets[gets.len() - 1],
    );
}

struct DirProbe(DirBlobs, std::path::PathBuf);

impl Probe for DirProbe {
    fn corrupt(&self, hash: ContentHash, other: Bytes) -> Fut<()> {
        let p = self.0.path(&hash);
        Box::pin(async move { std::fs::write(p, other).expect("overwrite the blob file") })
    }
    fn count(&self) -> Fut<usize> {
        let root = self.1.clone();
        Box::pin(async move {
            let mut n = 0;
            for shard in std::fs::read_dir(&root).expect("read root").flatten() {
                if shard.file_name() == "tmp" {
                    assert_eq!(
                        std::fs::read_dir(shard.path()).expect("tmp").count(),
                        0,
                        "no temp file left behind"
                    );
                    continue;
                }
                n += std::fs::read_dir(shard.path()).expect("shard").count();
            }
            n
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_directory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("objects");
    let d = DirBlobs::open(&root).expect("open");
    conformance(Arc::new(d.clone()), &DirProbe(d.clone(), root)).await;
    timing(&d, "dir 4 KiB", 4096, 20).await;
    timing(&d, "dir 1 MiB", 1 << 20, 10).await;
}

struct S3Probe(Arc<dyn ObjectStore>);

impl Probe for S3Probe {
    fn corrupt(&self, hash: ContentHash, other: Bytes) -> Fut<()> {
        let s = self.0.clone();
        Box::pin(async move {
            s.put(
                &ObjPath::from(blob_key(&hash)),
                PutPayload::from_bytes(other),
            )
            .await
            .expect("overwrite the object");
        })
    }
    fn count(&self) -> Fut<usize> {
        let s = self.0.clone();
        Box::pin(async move {
            let all: Vec<_> = s
                .list(Some(&ObjPath::from("blobs")))
                .try_collect()
                .await
                .expect("list");
            all.len()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_s3() {
    let Some(peer) = support::seaweedfs() else {
        return;
    };
    let s3 = S3Blobs::connect(&peer.s3_settings()).expect("connect");
    conformance(Arc::new(s3.clone()), &S3Probe(s3.object_store())).await;

    // SeaweedFS 4.48 honours If-None-Match: * (PutMode::Create): a second create of an
    // existing key is refused, so an object is never silently replaced. If this ever fails,
    // S3Blobs's doc comment and docs/cluster.md must change (create-only then rests on
    // content addressing alone).
    let raw = s3.object_store();
    let p = ObjPath::from("probe/create-only");
    raw.put_opts(
        &p,
        PutPayload::from_static(b"first"),
        PutMode::Create.into(),
    )
    .await
    .expect("first create");
    let second = raw
        .put_opts(
            &p,
            PutPayload::from_static(b"second"),
            PutMode::Create.into(),
        )
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second create must be refused: {second:?}"
    );
    let got = raw
        .get(&p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&got[..], b"first", "the first object is kept");

    // An object of another length under a blob's key is a conflict, not "stored".
    let (hx, bx) = blob("conflict", 64);
    raw.put(&S3Blobs::path(&hx), PutPayload::from_static(b"short"))
        .await
        .expect("plant");
    let e = s3.put(hx, bx).await.expect_err("conflict");
    assert!(matches!(e, BlobError::Conflict { .. }), "{e}");

    timing(&s3, "s3 4 KiB", 4096, 20).await;
    timing(&s3, "s3 1 MiB", 1 << 20, 10).await;
}
