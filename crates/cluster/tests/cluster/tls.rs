//! TLS to PostgreSQL (`[store] postgres_ca`, `postgres_cert`, `postgres_key`) against a server
//! that takes TLS connections only and requires a client certificate naming the role: the
//! pool and the change feed connect over TLS, and the store commits and reads through them.
//! A missing client certificate and a server certificate from another CA are refused.

use std::path::Path;
use std::time::Duration;

use huren_cluster::{migrate, ClusterConfig, ClusterOptions, ClusterStore, DirBlobs, StoreConfig};
use huren_store::ReportBackend;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::conformance::{lab, SECRET};
use crate::support;

/// `ca.pem`, `server.pem`/`server.key` (127.0.0.1, localhost) and `client.pem`/`client.key`
/// (CN `huren`) in `dir`.
fn certs(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let k = KeyPair::generate().unwrap();
    std::fs::write(
        dir.join("server.pem"),
        server.signed_by(&k, &issuer).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(dir.join("server.key"), k.serialize_pem()).unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "huren");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let k = KeyPair::generate().unwrap();
    std::fs::write(
        dir.join("client.pem"),
        client.signed_by(&k, &issuer).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(dir.join("client.key"), k.serialize_pem()).unwrap();
}

/// Whether `f` holds within 5 s.
async fn moves(f: impl Fn() -> bool) -> bool {
    for _ in 0..250 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn settings(dsn: &str, ca: &Path, client: Option<&Path>) -> ClusterConfig {
    StoreConfig {
        backend: huren_cluster::Backend::Cluster,
        postgres: Some(dsn.to_string()),
        postgres_ca: Some(ca.to_path_buf()),
        postgres_cert: client.map(|c| c.join("client.pem")),
        postgres_key: client.map(|c| c.join("client.key")),
        s3: Some(huren_cluster::S3Section {
            endpoint: Some("http://127.0.0.1:1".into()),
            bucket: Some("unused".into()),
            access_key_id: Some("unused".into()),
            secret_access_key: Some("unused".into()),
            ..Default::default()
        }),
        ..StoreConfig::default()
    }
    .cluster()
    .expect("settings")
    .expect("cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_and_its_change_feed_speak_tls_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The postgres user reads the copies the script makes; the directory must be searchable.
    certs(dir);
    let Some(pg) = support::postgres_tls(dir, Some(&dir.join("client"))) else {
        return;
    };
    assert!(pg.line.contains("sslmode=require"), "{}", pg.line);

    let cluster = settings(&pg.line, &dir.join("ca.pem"), Some(dir));
    let pool = cluster.pool(4).expect("pool");
    migrate(&pool).await.expect("migrate over TLS");
    let client = pool.get().await.expect("client");
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    assert!(row.get::<_, bool>(0), "the connection is TLS");
    assert!(row.get::<_, String>(1).starts_with("TLSv1."));
    drop(client);

    // Two nodes over TLS; B follows A's commits on its own TLS connection.
    let blobs = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        ClusterStore::new(
            cluster.pool(4).expect("pool"),
            DirBlobs::open(blobs.path()).expect("blobs"),
            ClusterOptions {
                node: name.into(),
                national_id_secret: SECRET.into(),
                ..ClusterOptions::default()
            },
        )
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let g0 = b.person_generation("A:P1");
    let _feed = b.follow_changes(cluster.postgres.clone(), cluster.postgres_tls.clone());
    assert!(
        moves(|| b.person_generation("A:P1") != g0).await,
        "the feed connected over TLS"
    );
    let g1 = b.person_generation("A:P1");
    let c = a
        .commit(lab("A", "P1", None, "K1", 1, "over TLS"))
        .await
        .expect("commit over TLS");
    let hash = c.reports[0].report;
    let back = b.report(hash).await.expect("read").expect("stored");
    assert_eq!(back.patient.local_id, "P1");
    assert!(
        moves(|| b.person_generation("A:P1") != g1).await,
        "A's commit reached B's feed"
    );

    // Without the client certificate: refused by the server.
    let no_cert = settings(&pg.line, &dir.join("ca.pem"), None);
    let e = no_cert
        .pool(1)
        .expect("pool")
        .get()
        .await
        .expect_err("refused");
    let text = format!("{e:?}");
    assert!(text.contains("certificate"), "{text}");

    // Trusting another CA: the server's certificate is refused by huren.
    let other = tempfile::tempdir().unwrap();
    certs(other.path());
    let wrong = settings(&pg.line, &other.path().join("ca.pem"), Some(dir));
    let e = wrong
        .pool(1)
        .expect("pool")
        .get()
        .await
        .expect_err("refused");
    let text = format!("{e:?}");
    assert!(
        text.contains("InvalidCertificate") && text.contains("Tls"),
        "{text}"
    );
}
