-- `huren serve --demo` on a cluster: the demo's national-ID secret and tokens, the same for
-- every node (the first node to start writes them), and whether the demo data is loaded (by
-- one node, under an advisory lock). Demo only: a real deployment configures its secret and
-- clinicians' token hashes and never has this row.
CREATE TABLE cluster_demo (
    id            int PRIMARY KEY CHECK (id = 1),
    secret        text NOT NULL,
    tokens        jsonb NOT NULL,
    patient_authorization text,
    loaded_at     timestamptz,
    loaded_by     text
);
