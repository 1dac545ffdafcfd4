//! The DIMSE service class provider on dicom-ul (async): C-ECHO, C-STORE and C-FIND
//! (Study Root and Patient Root, answered from the index by `huren_gate::query`).
//!
//! Every socket gets `TCP_NODELAY` (a Nagle-on exchange costs ~40 ms per instance on Linux).
//! The calling AE title must belong to a configured institution (or `accept_unknown`), the
//! called one must be ours. Every storage SOP class of PS3.4 Annex B is accepted, in every
//! transfer syntax dicom-rs can read; the data set is kept exactly as received (wrapped in a
//! deterministic file meta group), never transcoded. The C-STORE response is sent only after
//! the group commit that holds the instance and its study report: 0000 (stored / duplicate),
//! B000 (stored; something was coerced in the summary — the bytes never are), A900 (data set
//! does not match the SOP class / command), C000 (cannot parse), A700 (store failure).
//! Bad data never aborts the association.

use std::sync::Arc;
use std::time::Duration;

use dicom_ul::association::server::AccessControl;
use dicom_ul::association::AsyncServerAssociation;
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu,
    PresentationContextResultReason, UserIdentity,
};
use dicom_ul::ServerAssociationOptions;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::receive::{Incoming, ReceiveBudget, Received};
use huren_ingest::tls::{peer_institution, TlsSetup};
use huren_ingest::Gateway;

/// The association of either listener: plain TCP or DICOM TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Study Root Query/Retrieve Information Model – FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// Patient Root Query/Retrieve Information Model – FIND.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";

const C_STORE_RQ: u16 = 0x0001;
const C_FIND_RQ: u16 = 0x0020;
const C_ECHO_RQ: u16 = 0x0030;
const C_CANCEL_RQ: u16 = 0x0FFF;
const NO_DATA_SET: u16 = 0x0101;

/// Checks the AE titles of an association request against the configuration.
struct AeCheck {
    gw: Gateway,
}

impl AccessControl for AeCheck {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        match self.gw.dicom_institution(calling_ae_title) {
            Some(_) => Ok(()),
            None => Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
        }
    }
}

fn options(
    gw: &Gateway,
    aet: &str,
) -> ServerAssociationOptions<'static, AeCheck, dicom_ul::association::server::DefaultNegotiation> {
    let c = &gw.config.dicom;
    let mut o = ServerAssociationOptions::new()
        .ae_access_control(AeCheck { gw: gw.clone() })
        .ae_title(aet.to_string())
        .max_pdu_length(c.max_pdu)
        .read_timeout(Duration::from_secs(c.timeout_secs.max(1)))
        .write_timeout(Duration::from_secs(c.timeout_secs.max(1)))
        .promiscuous(c.accept_unknown_sop_classes)
        .with_abstract_syntax(VERIFICATION)
        .with_abstract_syntax(STUDY_ROOT_FIND)
        .with_abstract_syntax(PATIENT_ROOT_FIND);
    for (uid, _) in huren_dicom::STORAGE_SOP_CLASSES {
        o = o.with_abstract_syntax(*uid);
    }
    // Storage classes newer than the list above that every archive sees.
    for uid in EXTRA_STORAGE {
        o = o.with_abstract_syntax(*uid);
    }
    o
}

/// Storage SOP classes of PS3.4 Annex B that the dictionary-derived list names without the
/// word "Storage" at the end (SR, KOS, US, MR, …): added here so none is refused.
pub const EXTRA_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.3.1",    // US Multi-frame
    "1.2.840.10008.5.1.4.1.1.4",      // MR
    "1.2.840.10008.5.1.4.1.1.4.1",    // Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.2",    // MR Spectroscopy
    "1.2.840.10008.5.1.4.1.1.4.3",    // Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.4.4",    // Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",    // US
    "1.2.840.10008.5.1.4.1.1.6.2",    // Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.7",      // Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1",    // Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",    // Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",    // Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",    // Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.66",     // Raw Data
    "1.2.840.10008.5.1.4.1.1.66.1",   // Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.2",   // Spatial Fiducials
    "1.2.840.10008.5.1.4.1.1.66.3",   // Deformable Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.4",   // Segmentation
    "1.2.840.10008.5.1.4.1.1.66.5",   // Surface Segmentation
    "1.2.840.10008.5.1.4.1.1.67",     // Real World Value Mapping
    "1.2.840.10008.5.1.4.1.1.77.1.1", // VL Endoscopic
    "1.2.840.10008.5.1.4.1.1.77.1.2", // VL Microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.4", // VL Photographic
    "1.2.840.10008.5.1.4.1.1.77.1.6", // VL Whole Slide Microscopy
    "1.2.840.10008.5.1.4.1.1.78.1",   // Lensometry
    "1.2.840.10008.5.1.4.1.1.88.11",  // Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  // Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  // Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  // Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35",  // Extensible SR
    "1.2.840.10008.5.1.4.1.1.88.40",  // Procedure Log
    "1.2.840.10008.5.1.4.1.1.88.50",  // Mammography CAD SR
    "1.2.840.10008.5.1.4.1.1.88.59",  // Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.65",  // Chest CAD SR
    "1.2.840.10008.5.1.4.1.1.481.1",  // RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  // RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  // RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.4",  // RT Beams Treatment Record
    "1.2.840.10008.5.1.4.1.1.481.5",  // RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8",  // RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.481.9",  // RT Ion Beams Treatment Record
    "1.2.840.10008.5.1.4.1.1.128",    // PET
    "1.2.840.10008.5.1.4.1.1.20",     // NM
    "1.2.840.10008.5.1.4.1.1.12.1",   // XA
];

/// Serves DIMSE on `listener` until the task is dropped; with `tls`, every association is
/// DICOM TLS (the handshake, bounded by `timeout_secs`, comes first; with a client CA the
/// certificate's institution must be the calling AE title's, otherwise the association is
/// aborted right after negotiation).
pub async fn serve(
    listener: TcpListener,
    gw: Gateway,
    gate: Arc<huren_gate::Gate>,
    aet: String,
    tls: Option<Arc<TlsSetup>>,
) {
    let limit = Arc::new(Semaphore::new(gw.config.dicom.max_associations.max(1)));
    let budget = ReceiveBudget::new(gw.config.dicom.receive_budget_mib.saturating_mul(1 << 20));
    let mut opts = options(&gw, &aet);
    if let Some(t) = &tls {
        opts = opts.tls_config(t.server_config.clone());
    }
    let opts = Arc::new(opts);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "dicom accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many DICOM associations; connection closed");
            continue;
        };
        let gw = gw.clone();
        let gate = gate.clone();
        let opts = opts.clone();
        let tls = tls.clone();
        let budget = budget.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(t) = tls else {
                // dicom-ul bounds the whole association request (not each read) by the read
                // timeout.
                match opts.establish_async(sock).await {
                    Ok(a) => association(a, gw, gate, None, budget).await,
                    Err(e) => tracing::info!(%peer, error = %e, "DICOM association refused"),
                }
                return;
            };
            // dicom-ul bounds the association request by the read timeout, not the TLS
            // handshake before it: bound both here.
            let limit = Duration::from_secs(gw.config.dicom.timeout_secs.max(1));
            let mut a = match tokio::time::timeout(limit, opts.establish_tls_async(sock)).await {
                Err(_) => {
                    tracing::warn!(%peer, "DICOM TLS handshake timed out");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "DICOM TLS association refused");
                    return;
                }
                Ok(Ok(a)) => a,
            };
            match peer_institution(&t, a.inner_stream().get_ref().1) {
                Ok(inst) => association(a, gw, gate, inst, budget).await,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "DICOM TLS client refused");
                    let _ = a.abort().await;
                }
            }
        });
    }
}

/// The institution an association acts for: the calling AE title's; with a client
/// certificate, the certificate's, which must agree with a configured AE title.
fn acting_institution(gw: &Gateway, calling: &str, cert: Option<&str>) -> Result<String, String> {
    match (cert, gw.config.dicom.institution_of(calling)) {
        (None, _) => gw
            .dicom_institution(calling)
            .ok_or_else(|| format!("calling AE title {calling:?} belongs to no institution")),
        (Some(c), Some(ae)) if c != ae => Err(format!(
            "client certificate of {c} but calling AE title {calling:?} belongs to {ae}"
        )),
        (Some(c), _) => Ok(c.to_string()),
    }
}

/// One association, after negotiation: DIMSE messages until release, abort or timeout.
/// `cert` is the institution proven by a client certificate, if one was required.
async fn association<S: Stream>(
    mut assoc: AsyncServerAssociation<S>,
    gw: Gateway,
    gate: Arc<huren_gate::Gate>,
    cert: Option<String>,
    budget: Arc<ReceiveBudget>,
) {
    use dicom_ul::association::Association;
    let calling = assoc.peer_ae_title().trim().to_string();
    let institution = match acting_institution(&gw, &calling, cert.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "DICOM association aborted");
            let _ = assoc.abort().await;
            return;
        }
    };
    let contexts: Vec<(u8, String, String)> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                pc.abstract_syntax.clone(),
                pc.transfer_syntax.clone(),
            )
        })
        .collect();
    let c = &gw.config.dicom;
    let mut command: Vec<u8> = Vec::new();
    // The data set in progress; for a C-STORE it starts with the Part 10 header made from
    // the command's UIDs, so the instance is kept without copying the data set once more.
    let mut incoming = Incoming::new(
        budget,
        c.spool_above_kib.saturating_mul(1024),
        c.max_object_bytes,
    );
    let mut pending: Option<(u8, Command)> = None;
    // dicom-ul bounds each whole PDU (not each read) by `timeout_secs`, so a trickling peer
    // loses the association then; a peer that keeps sending small PDUs (C-ECHO after C-ECHO)
    // loses it at `max_association_secs`: no PDU is read after it.
    let end = tokio::time::Instant::now()
        + Duration::from_secs(gw.config.dicom.max_association_secs.max(1));
    loop {
        let pdu = match tokio::time::timeout_at(end, assoc.receive()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "DICOM association ended");
                return;
            }
            Err(_) => {
                tracing::warn!(%calling, "DICOM association over max_association_secs; aborted");
                let _ = assoc.abort().await;
                return;
            }
        };
        match pdu {
            Pdu::PData { data: values } => {
                for v in values {
                    match v.value_type {
                        PDataValueType::Command => {
                            command.extend_from_slice(&v.data);
                            if command.len() > MAX_COMMAND {
                                tracing::warn!(%calling, "DIMSE command too long; aborting");
                                let _ = assoc.abort().await;
                                return;
                            }
                            if !v.is_last {
                                continue;
                            }
                            let parsed = Command::parse(&command);
                            command.clear();
                            let Some(cmd) = parsed else {
                                tracing::warn!(%calling, "unparseable DIMSE command; aborting");
                                let _ = assoc.abort().await;
                                return;
                            };
                            if cmd.data_set_type != NO_DATA_SET {
                                if cmd.field == C_STORE_RQ {
                                    let ts = contexts
                                        .iter()
                                        .find(|c| c.0 == v.presentation_context_id)
                                        .map(|c| c.2.as_str())
                                        .unwrap_or_default();
                                    incoming.begin(
                                        huren_dicom::part10_header(
                                            ts,
                                            &cmd.sop_class,
                                            &cmd.sop_instance,
                                            64 * 1024,
                                        ),
                                        spoolable(ts, &cmd),
                                    );
                                } else {
                                    incoming.begin(Vec::new(), false);
                                }
                                pending = Some((v.presentation_context_id, cmd));
                                continue;
                            }
                            let rsp = match cmd.field {
                                // A C-FIND is answered in full before the next PDU is read:
                                // a late cancel has nothing left to stop.
                                C_CANCEL_RQ => continue,
                                C_ECHO_RQ => cmd.response(0x8030, 0, None),
                                f => {
                                    cmd.response(f | 0x8000, 0x0211, Some("unsupported operation"))
                                }
                            };
                            if send(&mut assoc, v.presentation_context_id, rsp)
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        PDataValueType::Data => {
                            incoming.push(&v.data, || gw.spool());
                            if !v.is_last {
                                continue;
                            }
                            let Some((pc, cmd)) = pending.take() else {
                                tracing::warn!(%calling, "data set without a command; aborting");
                                let _ = assoc.abort().await;
                                return;
                            };
                            let ts = contexts
                                .iter()
                                .find(|c| c.0 == pc)
                                .map(|c| c.2.clone())
                                .unwrap_or_default();
                            let received = incoming.take();
                            if cmd.field == C_FIND_RQ {
                                if let Received::Memory { bytes, .. } = received {
                                    let peer_max = assoc.requestor_max_pdu_length();
                                    let who =
                                        huren_access::Principal::dicom_peer(&calling, &institution);
                                    if find(&gate, &who, &mut assoc, pc, &cmd, bytes, &ts, peer_max)
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                    continue;
                                }
                            }
                            let rsp = if cmd.field == C_FIND_RQ {
                                // Only a refused identifier is left here (too large for
                                // memory, or the budget is used up): out of resources.
                                let why = match &received {
                                    Received::Refused(why) => why.as_str(),
                                    _ => "identifier not kept",
                                };
                                cmd.response(0x8020, 0xA700, Some(why))
                            } else if cmd.field != C_STORE_RQ {
                                cmd.response(
                                    cmd.field | 0x8000,
                                    0x0211,
                                    Some("unsupported operation"),
                                )
                            } else if let Some(negotiated) = other_class(&contexts, pc, &cmd) {
                                tracing::info!(
                                    %calling,
                                    affected = %cmd.sop_class,
                                    context = %negotiated,
                                    "C-STORE refused (0122): SOP class is not the context's"
                                );
                                cmd.response(
                                    0x8001,
                                    0x0122,
                                    Some("SOP class is not the presentation context's"),
                                )
                            } else if let Received::Refused(why) = &received {
                                tracing::info!(%calling, reason = %why, "C-STORE data set not kept");
                                cmd.response(0x8001, 0xA700, Some(why))
                            } else {
                                let out =
                                    store(&gw, received, &ts, &cmd, &institution, &calling).await;
                                cmd.response(
                                    0x8001,
                                    out.status,
                                    out.error
                                        .as_deref()
                                        .or(out.warnings.first().map(String::as_str)),
                                )
                            };
                            if send(&mut assoc, pc, rsp).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                return;
            }
            Pdu::AbortRQ { .. } => return,
            _ => {
                let _ = assoc.abort().await;
                return;
            }
        }
    }
}

/// The abstract syntax of presentation context `pc` when it is not the command's Affected SOP
/// Class UID (or `"none"` when `pc` names no accepted context); `None` when they agree.
///
/// PS3.7 binds a DIMSE-C request to the SOP class negotiated for its presentation context
/// (only DIMSE-N commands may differ, §10.1); a C-STORE of another class would store an
/// object the association never agreed on — and, through a context accepted for a known
/// class, one of a class `accept_unknown_sop_classes = false` refuses. Answered 0122
/// (Refused: SOP Class Not Supported), see docs/dicom.md.
fn other_class(contexts: &[(u8, String, String)], pc: u8, cmd: &Command) -> Option<String> {
    let trim = |s: &str| {
        s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string()
    };
    match contexts.iter().find(|c| c.0 == pc) {
        Some(c) if trim(&c.1) == cmd.sop_class => None,
        Some(c) => Some(trim(&c.1)),
        None => Some("none".into()),
    }
}

/// Answers one C-FIND: a pending response (FF00) with an identifier per match, then
/// success (0000); A900 for an identifier without a usable Query/Retrieve Level, C000 for
/// one that does not parse, A700 when the index cannot answer.
#[allow(clippy::too_many_arguments)]
async fn find<S: Stream>(
    gate: &huren_gate::Gate,
    who: &huren_access::Principal,
    assoc: &mut AsyncServerAssociation<S>,
    pc: u8,
    cmd: &Command,
    identifier: Vec<u8>,
    ts: &str,
    peer_max_pdu: u32,
) -> Result<(), dicom_ul::association::Error> {
    use huren_gate::query::{Key, Level};
    let patient_root = cmd.sop_class == PATIENT_ROOT_FIND;
    type Keys = Vec<(dicom_core::Tag, String)>;
    let parsed = (|| -> Result<(Level, Keys), (u16, String)> {
        let keys = huren_dicom::identifier::read_identifier(&identifier, ts)
            .map_err(|e| (0xC000, e.to_string()))?;
        let level = keys
            .iter()
            .find(|(t, _)| *t == dicom_dictionary_std::tags::QUERY_RETRIEVE_LEVEL)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let level = match Level::parse(level) {
            Some(Level::Patient) if !patient_root => {
                return Err((0xA900, "PATIENT level needs the Patient Root model".into()))
            }
            Some(l) => l,
            None => {
                return Err((
                    0xA900,
                    format!("Query/Retrieve Level {level:?} is missing or invalid"),
                ))
            }
        };
        Ok((level, keys))
    })();
    let (level, keys) = match parsed {
        Ok(x) => x,
        Err((status, why)) => {
            tracing::info!(status = format!("{status:04X}"), %why, "C-FIND refused");
            return send(assoc, pc, cmd.response(0x8020, status, Some(&why))).await;
        }
    };
    // The gate: the calling AE's institution is the principal; DIMSE carries no patient
    // authorisation, so a C-FIND sees only that institution's studies. One audit record.
    let tag_names: Vec<String> = keys
        .iter()
        .map(|(t, _)| format!("{:04X}{:04X}", t.group(), t.element()))
        .collect();
    let scope = match gate
        .search(
            who,
            None,
            None,
            &format!("cfind_{}", level.as_str().to_lowercase()),
            serde_json::json!({ "keys": tag_names }),
        )
        .await
    {
        Ok(s) => s,
        Err(p) => {
            let why = p.detail().to_string();
            return send(assoc, pc, cmd.response(0x8020, 0xA700, Some(&why))).await;
        }
    };
    let cap = scope.cap;
    let qkeys: Vec<Key> = keys
        .iter()
        .map(|(t, v)| Key {
            tag: *t,
            value: v.clone(),
        })
        .collect();
    let searched = tokio::task::spawn_blocking(move || {
        let found = scope.find(level, &qkeys, 0, cap + 1);
        (scope, found)
    })
    .await;
    let found = match searched {
        Ok((scope, Ok(found))) if found.len() <= cap => scope
            .release(found, cap)
            .await
            .map_err(|p| (0xA700, p.detail().to_string())),
        Ok((scope, Ok(found))) => {
            // Over the cap: nothing is answered; the refusal is the search's audit record.
            let _ = scope.release(found, 0).await;
            Err((
                0xA700,
                format!("more than {cap} matches; narrow the query (e.g. add a Patient ID or a Study Date range)"),
            ))
        }
        Ok((_, Err(e))) => Err((0xA700, format!("index: {e}"))),
        Err(_) => Err((0xC000, "the query task failed".to_string())),
    };
    let ts2 = ts.to_string();
    let answers = (|| -> Result<Vec<Vec<u8>>, (u16, String)> {
        let found = found?;
        let mut out = Vec::with_capacity(found.len());
        for attrs in found {
            let mut ident: Vec<(dicom_core::Tag, dicom_core::VR, Option<String>)> = Vec::new();
            for (t, _) in &keys {
                if *t == dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET {
                    continue;
                }
                if *t == dicom_dictionary_std::tags::QUERY_RETRIEVE_LEVEL {
                    ident.push((*t, dicom_core::VR::CS, Some(level.as_str().into())));
                    continue;
                }
                match attrs.iter().find(|a| a.tag == *t) {
                    Some(a) => ident.push((a.tag, a.vr, a.value.clone())),
                    None => ident.push((*t, dicom_core::VR::UN, None)),
                }
            }
            // Unknown return keys go back empty; drop those whose VR we cannot name.
            ident.retain(|(_, vr, v)| *vr != dicom_core::VR::UN || v.is_some());
            out.push(
                huren_dicom::identifier::write_identifier(&ident, &ts2)
                    .map_err(|e| (0xC000, e.to_string()))?,
            );
        }
        Ok(out)
    })();
    match answers {
        Err((status, why)) => {
            tracing::info!(status = format!("{status:04X}"), %why, "C-FIND refused");
            send(assoc, pc, cmd.response(0x8020, status, Some(&why))).await
        }
        Ok(answers) => {
            let chunk = if peer_max_pdu == 0 {
                16 * 1024
            } else {
                (peer_max_pdu as usize).saturating_sub(16).max(1024)
            };
            for a in answers {
                send(assoc, pc, cmd.response_with_data(0x8020, 0xFF00)).await?;
                let n = a.len().div_ceil(chunk).max(1);
                for (i, part) in a.chunks(chunk).enumerate() {
                    assoc
                        .send(&Pdu::PData {
                            data: vec![PDataValue {
                                presentation_context_id: pc,
                                value_type: PDataValueType::Data,
                                is_last: i + 1 == n,
                                data: part.to_vec(),
                            }],
                        })
                        .await?;
                }
            }
            send(assoc, pc, cmd.response(0x8020, 0x0000, None)).await
        }
    }
}

async fn send<S: Stream>(
    assoc: &mut AsyncServerAssociation<S>,
    pc: u8,
    bytes: Vec<u8>,
) -> Result<(), dicom_ul::association::Error> {
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .await
}

/// Data sets up to this size are parsed on the association's task, larger ones on the
/// blocking pool.
const INLINE_PARSE_MAX: usize = 256 * 1024;

/// The longest DIMSE command accepted (a command set is a few hundred bytes).
const MAX_COMMAND: usize = 64 * 1024;

/// A spooled data set is summarised from at most this many of its first bytes: the
/// attributes before the pixel data (or before the first element that does not end within
/// them). Beyond this the summary would cost memory again; such a data set is refused.
const SUMMARY_MAX: usize = 16 * 1024 * 1024;

/// Whether a C-STORE data set in `ts` may be spooled: one that can be summarised from its
/// first bytes (not deflated) and whose Part 10 header names its UIDs.
fn spoolable(ts: &str, cmd: &Command) -> bool {
    let ts = ts.trim_end_matches(['\0', ' ']);
    !matches!(ts, "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95")
        && !cmd.sop_class.is_empty()
        && !cmd.sop_instance.is_empty()
}

/// Parses and stores one C-STORE data set; never panics on bad data.
async fn store(
    gw: &Gateway,
    received: Received,
    ts: &str,
    cmd: &Command,
    institution: &str,
    calling: &str,
) -> huren_ingest::dicom::DicomOutcome {
    let (ts2, class, inst) = (
        ts.to_string(),
        cmd.sop_class.clone(),
        cmd.sop_instance.clone(),
    );
    let (bytes, at, hold) = match received {
        Received::Memory {
            bytes,
            header,
            hold,
        } => (bytes, header, hold),
        Received::Spooled {
            spool,
            header,
            dataset_hash,
            dataset_len,
        } => {
            let parsed = tokio::task::spawn_blocking(move || {
                spooled(
                    *spool,
                    header,
                    dataset_hash,
                    dataset_len,
                    &ts2,
                    &class,
                    &inst,
                )
            })
            .await
            .unwrap_or_else(|_| {
                Err(huren_dicom::DicomError::Parse(
                    "the data set parser failed".into(),
                ))
            });
            return match parsed {
                Ok((i, file)) => {
                    gw.ingest_dicom(
                        huren_store::Original::Stored(file),
                        &i,
                        institution,
                        Some(calling),
                    )
                    .await
                }
                Err(e) => {
                    tracing::info!(error = %e, "C-STORE data set refused");
                    huren_ingest::dicom::DicomOutcome::refused(&e)
                }
            };
        }
        Received::Refused(why) => {
            return huren_ingest::dicom::DicomOutcome::refused(&huren_dicom::DicomError::Parse(why))
        }
    };
    let small = bytes.len() <= INLINE_PARSE_MAX;
    let parse = move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ds = bytes.get(at..).unwrap_or_default();
            let i = huren_dicom::parse_cstore(ds, &ts2, &class, &inst)?;
            // The header already names the data set's UIDs (the usual case: the command's
            // and the data set's agree), else it is made again from the data set's.
            let part10 =
                if at > 0 && i.record.sop_class_uid == class && i.record.sop_instance_uid == inst {
                    bytes
                } else {
                    huren_dicom::to_part10(
                        ds,
                        &ts2,
                        &i.record.sop_class_uid,
                        &i.record.sop_instance_uid,
                    )
                };
            Ok::<_, huren_dicom::DicomError>((i, part10))
        }))
        .map_err(|_| ())
    };
    // A small data set is parsed here (~0.1 ms for a 39 KB CT): handing it to the blocking
    // pool and back cost two thread wake-ups, more than the parse, on the one-association
    // path where every instance waits for the one before. Larger ones go to the pool.
    let parsed = if small {
        parse()
    } else {
        tokio::task::spawn_blocking(parse).await.unwrap_or(Err(()))
    };
    match parsed {
        Ok(Ok((i, part10))) => {
            let out = gw
                .ingest_dicom(part10, &i, institution, Some(calling))
                .await;
            drop(hold);
            out
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "C-STORE data set refused");
            huren_ingest::dicom::DicomOutcome::refused(&e)
        }
        Err(_) => huren_ingest::dicom::DicomOutcome::refused(&huren_dicom::DicomError::Parse(
            "the data set parser failed".into(),
        )),
    }
}

/// Summarises a spooled data set from its first bytes and makes it a durable blob (blocking).
fn spooled(
    mut spool: huren_store::Spool,
    header: usize,
    dataset_hash: huren_model::ContentHash,
    dataset_len: u64,
    ts: &str,
    class: &str,
    inst: &str,
) -> Result<(huren_dicom::Instance, huren_store::StoredFile), huren_dicom::DicomError> {
    let io = |e: huren_store::StoreError| huren_dicom::DicomError::Parse(format!("spool: {e}"));
    let prefix = spool.read_range(header as u64, SUMMARY_MAX).map_err(io)?;
    let whole = prefix.len() as u64 >= dataset_len;
    let end = huren_dicom::guard::summary_end(&prefix, ts, whole)?;
    let summary = prefix.get(..end).unwrap_or_default();
    let mut i = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        huren_dicom::parse_cstore(summary, ts, class, inst)
    }))
    .map_err(|_| huren_dicom::DicomError::Parse("the data set parser failed".into()))??;
    // The Part 10 header was made from the command's UIDs; parse_cstore has checked that
    // the data set's agree.
    i.record.dataset_hash = dataset_hash;
    drop(prefix);
    let file = spool.finish().map_err(io)?;
    Ok((i, file))
}

/// The DIMSE command elements huren reads (group 0000, Implicit VR Little Endian).
#[derive(Clone, Debug, Default)]
pub struct Command {
    /// Command Field (0000,0100).
    pub field: u16,
    /// Message ID (0000,0110).
    pub message_id: u16,
    /// Command Data Set Type (0000,0800).
    pub data_set_type: u16,
    /// Affected / Requested SOP Class UID (0000,0002 / 0000,0003).
    pub sop_class: String,
    /// Affected / Requested SOP Instance UID (0000,1000 / 0000,1001).
    pub sop_instance: String,
    /// Priority (0000,0700).
    pub priority: u16,
}

fn uid(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

impl Command {
    /// Parses a command set; `None` when it is not one.
    pub fn parse(b: &[u8]) -> Option<Command> {
        let mut c = Command {
            data_set_type: NO_DATA_SET,
            ..Default::default()
        };
        let mut p = 0usize;
        let mut seen_field = false;
        while p + 8 <= b.len() {
            let g = u16::from_le_bytes([b[p], b[p + 1]]);
            let e = u16::from_le_bytes([b[p + 2], b[p + 3]]);
            let len = u32::from_le_bytes([b[p + 4], b[p + 5], b[p + 6], b[p + 7]]) as usize;
            let v = b.get(p + 8..p.checked_add(8)?.checked_add(len)?)?;
            if g != 0 {
                return None;
            }
            let us = || (v.len() >= 2).then(|| u16::from_le_bytes([v[0], v[1]]));
            match e {
                0x0002 | 0x0003 => c.sop_class = uid(v),
                0x0100 => {
                    c.field = us()?;
                    seen_field = true;
                }
                0x0110 => c.message_id = us()?,
                0x0700 => c.priority = us().unwrap_or(0),
                0x0800 => c.data_set_type = us()?,
                0x1000 | 0x1001 => c.sop_instance = uid(v),
                _ => {}
            }
            p += 8 + len;
        }
        seen_field.then_some(c)
    }

    /// A response command set (Implicit VR LE, with its group length), no data set.
    pub fn response(&self, field: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
        self.response_inner(field, status, comment, NO_DATA_SET)
    }

    /// A response command set announcing a data set (C-FIND pending answers).
    pub fn response_with_data(&self, field: u16, status: u16) -> Vec<u8> {
        self.response_inner(field, status, None, 0x0001)
    }

    fn response_inner(
        &self,
        field: u16,
        status: u16,
        comment: Option<&str>,
        data_set_type: u16,
    ) -> Vec<u8> {
        fn el(out: &mut Vec<u8>, e: u16, v: &[u8], pad: u8) {
            let mut v = v.to_vec();
            if v.len() % 2 == 1 {
                v.push(pad);
            }
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(&v);
        }
        let mut body = Vec::with_capacity(160);
        if !self.sop_class.is_empty() {
            el(&mut body, 0x0002, self.sop_class.as_bytes(), 0);
        }
        el(&mut body, 0x0100, &field.to_le_bytes(), 0);
        el(&mut body, 0x0120, &self.message_id.to_le_bytes(), 0);
        el(&mut body, 0x0800, &data_set_type.to_le_bytes(), 0);
        el(&mut body, 0x0900, &status.to_le_bytes(), 0);
        if let Some(c) = comment.filter(|_| status != 0) {
            // Error Comment is LO: at most 64 characters.
            let c: String = c
                .chars()
                .filter(|c| c.is_ascii() && !c.is_control())
                .take(64)
                .collect();
            el(&mut body, 0x0902, c.as_bytes(), b' ');
        }
        if !self.sop_instance.is_empty() && field != 0x8020 {
            el(&mut body, 0x1000, self.sop_instance.as_bytes(), 0);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        el(&mut out, 0x0000, &(body.len() as u32).to_le_bytes(), 0);
        out.extend_from_slice(&body);
        out
    }
}
