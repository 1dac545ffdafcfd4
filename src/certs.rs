//! `huren certs dev`: a development CA with a server certificate and one client certificate per
//! institution (URI SAN `urn:huren:institution:<CODE>`), for tests and the demo. Never for
//! production: keys are written unencrypted.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
}

/// Writes `ca.pem`, `server.pem`, `server.key` and `client-<CODE>.pem/.key` into `dir`, and
/// `crl.pem` revoking the client certificates of the institutions in `revoke`.
pub fn dev(
    dir: &Path,
    hosts: &[String],
    institutions: &[String],
    revoke: &[String],
) -> Result<serde_json::Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "huren development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(dir, "ca.pem", &ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "huren gateway");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate()?;
    write(
        dir,
        "server.pem",
        &server.signed_by(&server_key, &issuer)?.pem(),
    )?;
    write(dir, "server.key", &server_key.serialize_pem())?;

    let mut clients = Vec::new();
    let mut revoked = Vec::new();
    for (n, code) in institutions.iter().chain(revoke).enumerate() {
        let serial = SerialNumber::from(n as u64 + 1000);
        if revoke.contains(code) {
            revoked.push(RevokedCertParams {
                serial_number: serial.clone(),
                revocation_time: date_time_ymd(2025, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.serial_number = Some(serial);
        p.distinguished_name.push(DnType::CommonName, code.as_str());
        let uri = format!("urn:huren:institution:{code}");
        p.subject_alt_names = vec![SanType::URI(uri.as_str().try_into()?)];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let k = KeyPair::generate()?;
        write(
            dir,
            &format!("client-{code}.pem"),
            &p.signed_by(&k, &issuer)?.pem(),
        )?;
        write(dir, &format!("client-{code}.key"), &k.serialize_pem())?;
        clients.push(serde_json::json!({"institution": code, "uri": uri}));
    }
    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2025, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    write(dir, "crl.pem", &crl.pem()?)?;
    Ok(
        serde_json::json!({"certs": dir.display().to_string(), "ca": "ca.pem", "server": "server.pem", "crl": "crl.pem", "clients": clients, "revoked": revoke}),
    )
}
