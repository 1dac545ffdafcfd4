-- huren cluster schema, migration 0001 (issue 19). Runs inside migrate()'s transaction, under
-- pg_advisory_xact_lock; recorded in huren_migrations. A sketch of the index the embedded
-- store keeps in sled and its logs, shaped so that uniqueness comes from constraints
-- (INSERT … ON CONFLICT), never from check-then-insert.
--
-- Conventions: hashes are the raw 32-byte BLAKE3 digests (bytea, checked length); blobs
-- themselves live in the object store under blobs/ab/cd/<hex>. Times are timestamptz.
-- `node` names the huren node that wrote a row (for audit chains and diagnostics).

-- Blobs the index refers to. A blob is PUT to S3 before the batch's transaction; this row is
-- written in that transaction. An S3 object without a row older than the grace period is an
-- orphan of a crash between the two and may be swept (under an advisory lock).
CREATE TABLE blobs (
    hash        bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    size        bigint NOT NULL CHECK (size >= 0),
    stored_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per version chain (kind|institution|source_key): the row a writer locks
-- (SELECT … FOR UPDATE, in sorted key order across a batch) before it adds a version, so two
-- nodes adding versions to one chain serialise there and nowhere else.
CREATE TABLE report_chains (
    chain_key   text PRIMARY KEY,
    head_hash   bytea,                       -- the newest version (NULL only while the first is inserted)
    head_version integer NOT NULL DEFAULT 0 CHECK (head_version >= 0)
);

-- Reports: one row per stored version. The hash is that of the report's canonical JSON, so a
-- resent identical report hits the primary key (ON CONFLICT DO NOTHING = duplicate). The
-- columns are the embedded index's ReportMeta; the canonical JSON itself lives here (checked
-- against the hash on read), not in the object store.
CREATE TABLE reports (
    hash          bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    chain_key     text NOT NULL REFERENCES report_chains (chain_key),
    version       integer NOT NULL CHECK (version >= 1),
    -- Set on the older version when a newer one arrives, in the same transaction.
    superseded_by bytea REFERENCES reports (hash),
    -- The open identity review item the report waits on (identity-uncertain while set).
    identity_review text,
    patient_key   text NOT NULL,             -- INST:LOCAL (the sender's patient ID)
    institution   text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('lab', 'imaging', 'ecg')),
    status        text NOT NULL CHECK (status IN ('preliminary', 'final', 'corrected', 'cancelled')),
    time_ms       bigint,                    -- the result's clinical time, ms since the epoch
    received_at   text NOT NULL,             -- RFC 3339, as the receiving node wrote it
    original      bytea NOT NULL REFERENCES blobs (hash),
    canonical     bytea NOT NULL,            -- the canonical JSON the hash is over
    node          text NOT NULL,
    -- Two nodes cannot both make version N of one chain.
    CONSTRAINT reports_chain_version UNIQUE (chain_key, version),
    CONSTRAINT reports_not_self_superseded CHECK (superseded_by IS NULL OR superseded_by <> hash)
);
-- A person's current reports: by local key, current versions only.
CREATE INDEX reports_patient ON reports (patient_key) WHERE superseded_by IS NULL;
ALTER TABLE report_chains
    ADD CONSTRAINT report_chains_head FOREIGN KEY (head_hash) REFERENCES reports (hash)
    DEFERRABLE INITIALLY DEFERRED;

-- DICOM instances of imaging reports: one row per SOP instance, the first stored wins (a
-- resent instance is ON CONFLICT DO NOTHING, as the embedded store's dedup).
CREATE TABLE instances (
    sop_instance_uid text PRIMARY KEY,
    study_uid        text NOT NULL,
    series_uid       text NOT NULL,
    institution      text NOT NULL,
    patient_key      text NOT NULL,
    blob             bytea NOT NULL REFERENCES blobs (hash),
    record           jsonb NOT NULL,          -- the InstanceRecord summary
    received_at      timestamptz NOT NULL
);
CREATE INDEX instances_study ON instances (study_uid, series_uid);

-- Identity: a sender's patient key linked to a person key. One current link per patient
-- key (the primary key): a relink is an UPDATE in the same transaction as its audit record.
CREATE TABLE identity_links (
    patient_key text PRIMARY KEY,
    person_key  text NOT NULL,
    source      text NOT NULL,               -- how it was linked: message, registrar, merge
    linked_at   timestamptz NOT NULL,
    node        text NOT NULL
);
CREATE INDEX identity_links_person ON identity_links (person_key);

-- Merges (HL7 A40): the merged-away key points to the surviving one; at most one target.
CREATE TABLE identity_merges (
    from_key  text PRIMARY KEY,
    into_key  text NOT NULL CHECK (into_key <> from_key),
    merged_at timestamptz NOT NULL,
    node      text NOT NULL
);

-- Identity review items: a message claimed a national ID that contradicts the existing link
-- of its local key. The id is `txid-entry` of the transaction that opened it.
CREATE TABLE identity_reviews (
    id        text PRIMARY KEY,
    local_key text NOT NULL,
    claimed   text NOT NULL,
    original  bytea,
    open      boolean NOT NULL,
    opened    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- creation order
    item      jsonb NOT NULL                 -- the ReviewItem
);
CREATE INDEX identity_reviews_open ON identity_reviews (local_key, claimed) WHERE open;

-- Audit: one hash chain per node, so nodes never serialise on one global chain. Record n of a
-- node names the hash of record n-1 (prev_hash); the first has none. The primary key forbids
-- two records with one number, the unique (node, prev_hash) two with one predecessor (a fork).
CREATE TABLE audit_records (
    node      text NOT NULL,
    seq       bigint NOT NULL CHECK (seq >= 1),
    prev_hash bytea CHECK (prev_hash IS NULL OR octet_length(prev_hash) = 32),
    hash      bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    at        timestamptz NOT NULL,
    action    text NOT NULL,
    actor     text NOT NULL,
    patient   text,                          -- person key, never a national ID
    record    bytea NOT NULL,                -- the canonical JSON line the hash covers
    PRIMARY KEY (node, seq),
    CONSTRAINT audit_records_first CHECK ((seq = 1) = (prev_hash IS NULL)),
    CONSTRAINT audit_records_no_fork UNIQUE (node, prev_hash)
);
CREATE INDEX audit_records_patient ON audit_records (patient, at) WHERE patient IS NOT NULL;
CREATE INDEX audit_records_actor ON audit_records (actor, at);
CREATE INDEX audit_records_at ON audit_records (at);

-- Periodic checkpoints over every node's chain head, hash-chained themselves, so `verify`
-- checks the whole cluster and a truncated node chain is noticed.
CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    prev_hash bytea CHECK (prev_hash IS NULL OR octet_length(prev_hash) = 32),
    hash      bytea NOT NULL UNIQUE,
    at        timestamptz NOT NULL,
    heads     jsonb NOT NULL,                -- {node: [seq, hash hex]}
    CONSTRAINT audit_checkpoints_first CHECK ((seq = 1) = (prev_hash IS NULL))
);

-- Consents (patient authorisations). Codes only as keyed digests; one row per consent,
-- revoked by setting revoked_at once (UPDATE … WHERE revoked_at IS NULL).
CREATE TABLE consents (
    consent_id  text PRIMARY KEY,
    person_key  text NOT NULL,
    code_digest bytea NOT NULL UNIQUE,
    granted_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    record      jsonb NOT NULL,
    node        text NOT NULL
);
CREATE INDEX consents_person ON consents (person_key) WHERE revoked_at IS NULL;

-- Event streams: reading tasks, alerts, outbox and webhook deliveries, chest-pain cases,
-- roster edits. Each stream (a task, an alert, a message…) is the fold of its events, the
-- embedded store's JSON-lines logs. (stream_id, seq) is the primary key: a writer appends
-- seq = last + 1 after checking the transition, and two nodes appending the same seq collide
-- on the key (the loser re-reads and re-checks) — optimistic, never check-then-insert.
-- feed_id orders the change feed (SSE Last-Event-ID); identity values can commit out of
-- order, which the feed reader must allow for (not built yet).
CREATE TABLE task_events (
    stream_id text NOT NULL,
    seq       integer NOT NULL CHECK (seq >= 1),
    feed_id   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    at        timestamptz NOT NULL,
    node      text NOT NULL,
    event     jsonb NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE alert_events (LIKE task_events INCLUDING ALL);
CREATE TABLE case_events (LIKE task_events INCLUDING ALL);
CREATE TABLE roster_events (LIKE task_events INCLUDING ALL);
-- Outbox and webhook deliveries: stream_id is the message id, so enqueueing one twice is
-- ON CONFLICT DO NOTHING on (stream_id, 1).
CREATE TABLE outbox_events (LIKE task_events INCLUDING ALL);
CREATE TABLE webhook_events (LIKE task_events INCLUDING ALL);

-- Statistics as delta rows (no hot counter row): readers sum, a periodic job folds old
-- deltas into one row per name.
CREATE TABLE stat_deltas (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL,
    delta bigint NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stat_deltas_name ON stat_deltas (name);

-- `huren migrate`: how far the copy of an embedded store has come (the last journal record
-- whose ingests are all committed), so an interrupted copy resumes there.
CREATE TABLE store_copies (
    source     text PRIMARY KEY,             -- the embedded store's directory, canonical
    seq        bigint NOT NULL CHECK (seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
