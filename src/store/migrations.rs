//! Numbered schema migrations (`PRAGMA user_version`). Append new ones; never edit a shipped one.

use rusqlite_migration::{HookError, Migrations, M};

pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(V1),
        M::up_with_hook(V2, |tx: &rusqlite::Transaction<'_>| {
            // Rows finished under V1 join the chain in the order they were written, then the
            // triggers that keep the chain whole are created.
            super::airtime::link_unchained(tx, super::airtime::MIGRATION_FINALIZED)
                .map_err(|e| HookError::Hook(format!("linking the existing airtime rows: {e}")))?;
            tx.execute_batch(V2_TRIGGERS)?;
            Ok(())
        }),
        M::up(V3),
    ])
}

const V1: &str = r#"
CREATE TABLE announcements (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL CHECK (length(title) > 0),
    script        TEXT NOT NULL DEFAULT '',
    agency        TEXT NOT NULL DEFAULT '',
    priority      TEXT NOT NULL CHECK (priority IN ('normal', 'high')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn')),
    sha256        TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    container     TEXT NOT NULL,
    codec         TEXT NOT NULL,
    sample_rate   INTEGER NOT NULL,
    channels      INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    loudness_lufs REAL,
    valid_from    TEXT,
    valid_until   TEXT,
    plays_per_day INTEGER NOT NULL CHECK (plays_per_day >= 0),
    outputs       TEXT NOT NULL,
    uploaded_by   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    TEXT,
    reason        TEXT
);
CREATE INDEX announcements_status ON announcements(status);

-- Who changed what, when: every state change of an announcement. Append-only.
CREATE TABLE announcement_history (
    id              INTEGER PRIMARY KEY,
    announcement_id INTEGER NOT NULL REFERENCES announcements(id),
    action          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX announcement_history_ann ON announcement_history(announcement_id);
CREATE TRIGGER announcement_history_no_update BEFORE UPDATE ON announcement_history
BEGIN SELECT RAISE(ABORT, 'announcement history is append-only'); END;
CREATE TRIGGER announcement_history_no_delete BEFORE DELETE ON announcement_history
BEGIN SELECT RAISE(ABORT, 'announcement history is append-only'); END;

CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('uploader', 'approver', 'auditor', 'admin')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- The airtime (as-run) log. A row is inserted when an airing starts (status 'playing') and
-- closed once; after that it can never change, and no row can ever be deleted.
CREATE TABLE airtime (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    announcement_id INTEGER REFERENCES announcements(id),
    title           TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    output          TEXT NOT NULL,
    slot            TEXT NOT NULL,
    scheduled_at    TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    duration_ms     INTEGER,
    status          TEXT NOT NULL
        CHECK (status IN ('playing', 'completed', 'interrupted', 'failed', 'missed')),
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX airtime_scheduled ON airtime(scheduled_at);
CREATE INDEX airtime_output_scheduled ON airtime(output, scheduled_at);
CREATE INDEX airtime_announcement ON airtime(announcement_id);
CREATE INDEX airtime_open ON airtime(status) WHERE status = 'playing';
CREATE TRIGGER airtime_no_delete BEFORE DELETE ON airtime
BEGIN SELECT RAISE(ABORT, 'the airtime log is append-only: rows cannot be deleted'); END;
CREATE TRIGGER airtime_finished_is_final BEFORE UPDATE ON airtime
WHEN OLD.status <> 'playing'
BEGIN SELECT RAISE(ABORT, 'the airtime log is append-only: a finished row cannot change'); END;
CREATE TRIGGER airtime_close_only BEFORE UPDATE ON airtime
WHEN OLD.status = 'playing' AND (
    NEW.id IS NOT OLD.id OR NEW.announcement_id IS NOT OLD.announcement_id
    OR NEW.title IS NOT OLD.title OR NEW.sha256 IS NOT OLD.sha256 OR NEW.output IS NOT OLD.output
    OR NEW.slot IS NOT OLD.slot OR NEW.scheduled_at IS NOT OLD.scheduled_at
    OR NEW.started_at IS NOT OLD.started_at OR NEW.status = 'playing')
BEGIN SELECT RAISE(ABORT, 'an open airtime row may only be closed'); END;
"#;

// Issue #4: the airtime log becomes a hash chain. Every finished row gets `seq` (its place, in
// the order rows became final), `finalized_at`, `prev_hash` and `hash` (see audit::chain) in
// the same statement that makes it final. The V1 triggers are replaced (after the hook has
// linked the rows V1 already finished) by ones that also keep these columns final and make the
// database itself refuse a row that does not extend the chain's end.
const V2: &str = r#"
ALTER TABLE airtime ADD COLUMN seq INTEGER;
ALTER TABLE airtime ADD COLUMN finalized_at TEXT;
ALTER TABLE airtime ADD COLUMN prev_hash TEXT;
ALTER TABLE airtime ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX airtime_seq ON airtime(seq);
DROP TRIGGER airtime_finished_is_final;
DROP TRIGGER airtime_close_only;
"#;

const V2_TRIGGERS: &str = r#"
CREATE TRIGGER airtime_finished_is_final BEFORE UPDATE ON airtime
WHEN OLD.status <> 'playing'
BEGIN SELECT RAISE(ABORT, 'the airtime log is append-only: a finished row cannot change'); END;

CREATE TRIGGER airtime_close_only BEFORE UPDATE ON airtime
WHEN OLD.status = 'playing' AND (
    NEW.id IS NOT OLD.id OR NEW.announcement_id IS NOT OLD.announcement_id
    OR NEW.title IS NOT OLD.title OR NEW.sha256 IS NOT OLD.sha256 OR NEW.output IS NOT OLD.output
    OR NEW.slot IS NOT OLD.slot OR NEW.scheduled_at IS NOT OLD.scheduled_at
    OR NEW.started_at IS NOT OLD.started_at OR NEW.status = 'playing')
BEGIN SELECT RAISE(ABORT, 'an open airtime row may only be closed'); END;

-- A row becomes final only as the next link of the chain: the next seq, following the hash of
-- the row before. (The hash itself is checked by `hokrajai audit verify-db`: SQL has no SHA-256.)
CREATE TRIGGER airtime_close_links BEFORE UPDATE ON airtime
WHEN OLD.status = 'playing' AND NOT (
    NEW.seq IS NOT NULL AND NEW.finalized_at IS NOT NULL
    AND NEW.hash IS NOT NULL AND length(NEW.hash) = 64
    AND NEW.seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM airtime)
    AND NEW.prev_hash IS COALESCE((SELECT hash FROM airtime WHERE seq = NEW.seq - 1),
        '0000000000000000000000000000000000000000000000000000000000000000'))
BEGIN SELECT RAISE(ABORT, 'a finished airtime row must be the next link of the chain'); END;

CREATE TRIGGER airtime_insert_links BEFORE INSERT ON airtime
WHEN NEW.status <> 'playing' AND NOT (
    NEW.seq IS NOT NULL AND NEW.finalized_at IS NOT NULL
    AND NEW.hash IS NOT NULL AND length(NEW.hash) = 64
    AND NEW.seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM airtime)
    AND NEW.prev_hash IS COALESCE((SELECT hash FROM airtime WHERE seq = NEW.seq - 1),
        '0000000000000000000000000000000000000000000000000000000000000000'))
BEGIN SELECT RAISE(ABORT, 'a finished airtime row must be the next link of the chain'); END;

CREATE TRIGGER airtime_insert_open BEFORE INSERT ON airtime
WHEN NEW.status = 'playing' AND (NEW.seq IS NOT NULL OR NEW.finalized_at IS NOT NULL
    OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL)
BEGIN SELECT RAISE(ABORT, 'an open airtime row has no place in the chain yet'); END;
"#;

// Issue #3, the provincial link. A `box` role for tokens (SQLite cannot change a CHECK, so the
// table is rebuilt with the same rows); where an announcement came from (uploaded here, pulled
// from the province, or a CAP alert); the state of each upstream manifest; the outbox of airtime
// rows still to report, filled by triggers so a row is queued in the very transaction that
// makes it final; on a province, the rows boxes reported, kept per box and as append-only as
// the box's own log; and every CAP message received, aired or not.
const V3: &str = r#"
CREATE TABLE tokens_v3 (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('uploader', 'approver', 'auditor', 'admin', 'box')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
INSERT INTO tokens_v3 (id, name, role, hash, created_at, revoked_at)
    SELECT id, name, role, hash, created_at, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v3 RENAME TO tokens;

ALTER TABLE announcements ADD COLUMN source TEXT NOT NULL DEFAULT 'local'
    CHECK (source IN ('local', 'province', 'cap'));
ALTER TABLE announcements ADD COLUMN source_ref TEXT;
CREATE UNIQUE INDEX announcements_source_ref ON announcements(source, source_ref)
    WHERE source_ref IS NOT NULL;

CREATE TABLE upstreams (
    name            TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    etag            TEXT,
    sequence        INTEGER,
    manifest_sha256 TEXT,
    items           INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_success_at TEXT,
    last_change_at  TEXT,
    last_error      TEXT,
    last_error_at   TEXT
);

CREATE TABLE outbox (
    seq       INTEGER PRIMARY KEY,
    queued_at TEXT NOT NULL
);
INSERT INTO outbox (seq, queued_at) SELECT seq, finalized_at FROM airtime WHERE seq IS NOT NULL;
CREATE TRIGGER airtime_outbox_close AFTER UPDATE OF seq ON airtime
WHEN OLD.seq IS NULL AND NEW.seq IS NOT NULL
BEGIN INSERT INTO outbox (seq, queued_at) VALUES (NEW.seq, NEW.finalized_at); END;
CREATE TRIGGER airtime_outbox_insert AFTER INSERT ON airtime
WHEN NEW.seq IS NOT NULL
BEGIN INSERT INTO outbox (seq, queued_at) VALUES (NEW.seq, NEW.finalized_at); END;

CREATE TABLE reporter (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_attempt_at TEXT,
    last_success_at TEXT,
    last_error      TEXT,
    last_error_at   TEXT,
    reported_rows   INTEGER NOT NULL DEFAULT 0,
    reported_through INTEGER NOT NULL DEFAULT 0
);
INSERT INTO reporter (id) VALUES (1);

CREATE TABLE box_airtime (
    box             TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    id              INTEGER NOT NULL,
    announcement_id INTEGER,
    title           TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    output          TEXT NOT NULL,
    slot            TEXT NOT NULL,
    scheduled_at    TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    duration_ms     INTEGER,
    status          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    finalized_at    TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (box, seq)
);
CREATE INDEX box_airtime_scheduled ON box_airtime(scheduled_at);
CREATE INDEX box_airtime_box_output ON box_airtime(box, output, scheduled_at);
CREATE TRIGGER box_airtime_no_update BEFORE UPDATE ON box_airtime
BEGIN SELECT RAISE(ABORT, 'reported airtime is append-only'); END;
CREATE TRIGGER box_airtime_no_delete BEFORE DELETE ON box_airtime
BEGIN SELECT RAISE(ABORT, 'reported airtime is append-only'); END;

CREATE TABLE box_reports (
    box         TEXT NOT NULL,
    key         TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    new_rows    INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (box, key)
);

CREATE TABLE cap_messages (
    id              INTEGER PRIMARY KEY,
    sender          TEXT NOT NULL,
    identifier      TEXT NOT NULL,
    sent            TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    via             TEXT NOT NULL,
    decision        TEXT NOT NULL,
    detail          TEXT NOT NULL,
    announcement_id INTEGER REFERENCES announcements(id),
    UNIQUE (sender, identifier, sent)
);
"#;

/// V1 alone, for tests of the upgrade from it.
#[cfg(test)]
pub(crate) const V1_FOR_TESTS: &str = V1;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
