//! DICOM instance records: committed with their original, indexed as study/series/patient
//! rows for C-FIND and QIDO, idempotent on replay, and rebuilt by `Store::reindex`.

use huren_model::{ContentHash, InstanceRecord};
use huren_store::{Ingest, Store, StoreOptions};

fn record(original: &[u8], sop: &str, series: &str, data: &[u8]) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: series.into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        original: ContentHash::of(original),
        dataset_hash: ContentHash::of(data),
        size: original.len() as u64,
        institution: "FX-ZX".into(),
        modality: Some("CT".into()),
        patient_id: "P1".into(),
        patient_name: Some("张^三".into()),
        study_date: Some("20251103".into()),
        ..Default::default()
    }
}

fn commit(store: &Store, original: &[u8], rec: InstanceRecord) {
    let ingest = Ingest {
        original: original.into(),
        received_at: "2025-11-03T10:00:00+08:00".into(),
        ..Default::default()
    };
    store.commit_instances_blocking(ingest, vec![rec]).unwrap();
}

#[test]
fn instance_rows_are_indexed_and_rebuilt_by_reindex() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        commit(&store, b"a", record(b"a", "1.2.3.1.1", "1.2.3.1", b"da"));
        commit(&store, b"b", record(b"b", "1.2.3.1.2", "1.2.3.1", b"db"));
        commit(&store, b"c", record(b"c", "1.2.3.2.1", "1.2.3.2", b"dc"));
        // The same instance again (idempotent) and a replaced one (new bytes, same UID).
        commit(&store, b"a", record(b"a", "1.2.3.1.1", "1.2.3.1", b"da"));
        commit(&store, b"a2", record(b"a2", "1.2.3.1.1", "1.2.3.1", b"da2"));
        let st = store.study("1.2.3").unwrap().unwrap();
        assert_eq!((st.series_count, st.instance_count), (2, 3));
        assert_eq!(st.patient_name.as_deref(), Some("张^三"));
        assert_eq!(store.studies(Some("P1")).unwrap().len(), 1);
        assert_eq!(store.studies(Some("P2")).unwrap().len(), 0);
        assert_eq!(
            store.instance("1.2.3.1.1").unwrap().unwrap().original,
            ContentHash::of(b"a2")
        );
        assert_eq!(store.blob(&ContentHash::of(b"a")).unwrap().unwrap(), b"a");
    }
    Store::reindex(dir.path()).unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let st = store.study("1.2.3").unwrap().unwrap();
    assert_eq!((st.series_count, st.instance_count), (2, 3));
    assert_eq!(store.series_of_study("1.2.3").unwrap().len(), 2);
    assert_eq!(store.instances_of_study("1.2.3").unwrap().len(), 3);
    assert_eq!(store.studies(None).unwrap().len(), 1);
    assert!(store.verify().unwrap().problems.is_empty());
}
