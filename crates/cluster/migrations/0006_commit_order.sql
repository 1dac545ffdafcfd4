-- Followers of the commits (the regional platform's push, issue 20, on a cluster): each report
-- row notes the transaction that wrote it. A follower reads the rows of transactions older
-- than every transaction still running (`pg_snapshot_xmin`), in transaction order, so a
-- commit that becomes visible late is never skipped; its position is one row per follower.
ALTER TABLE reports ADD COLUMN commit_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX reports_commit_xid ON reports (commit_xid);
CREATE TABLE follower_cursors (
    name      text PRIMARY KEY,
    position  bigint NOT NULL CHECK (position >= 0),
    saved_at  timestamptz NOT NULL DEFAULT now(),
    node      text NOT NULL
);
