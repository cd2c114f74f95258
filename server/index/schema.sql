-- schema.sql - the index schema (see index.h). Embedded into the binary at
-- build time; every statement is idempotent. Bump user_version when a
-- change needs a migration (index_open refuses unknown newer versions).
PRAGMA foreign_keys = ON;

CREATE TABLE IF NOT EXISTS patient (
    pk          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL DEFAULT '',
    issuer      TEXT NOT NULL DEFAULT '',
    UNIQUE (patient_id, issuer)
);

CREATE TABLE IF NOT EXISTS study (
    pk                  INTEGER PRIMARY KEY,
    study_uid           TEXT NOT NULL UNIQUE,
    patient_fk          INTEGER NOT NULL REFERENCES patient(pk),
    patient_name        TEXT,
    patient_name_key    TEXT,      -- pn_normalize()d, for case-insensitive match
    patient_id          TEXT,
    issuer              TEXT,
    patient_birth_date  TEXT,
    patient_sex         TEXT,
    study_date          TEXT,
    study_time          TEXT,
    accession           TEXT,
    referring           TEXT,
    referring_key       TEXT,
    description         TEXT,
    study_id            TEXT,
    institution         TEXT,      -- InstitutionName, else the sender's AE title
    charset             TEXT,
    timezone            TEXT,
    modalities          TEXT,      -- distinct series modalities, '\' separated
    n_series            INTEGER NOT NULL DEFAULT 0,
    n_instances         INTEGER NOT NULL DEFAULT 0,
    json                BLOB,      -- study + patient level DICOM JSON
    attr_sop            TEXT,      -- the instance these attributes come from (see index.c)
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS study_order ON study (study_date DESC, study_time DESC, study_uid);
CREATE INDEX IF NOT EXISTS study_patient_id ON study (patient_id);
CREATE INDEX IF NOT EXISTS study_patient_fk ON study (patient_fk);
CREATE INDEX IF NOT EXISTS study_accession ON study (accession);
CREATE INDEX IF NOT EXISTS study_name_key ON study (patient_name_key);

-- person name search keys: kind 0 = a whole name group ("wang^xiaodong"),
-- kind 1 = a component or the concatenation of a group's components
CREATE TABLE IF NOT EXISTS pn_key (
    study_fk    INTEGER NOT NULL REFERENCES study(pk) ON DELETE CASCADE,
    kind        INTEGER NOT NULL,
    key         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pn_key_key ON pn_key (kind, key, study_fk);
CREATE INDEX IF NOT EXISTS pn_key_study ON pn_key (study_fk);

CREATE TABLE IF NOT EXISTS series (
    pk                  INTEGER PRIMARY KEY,
    series_uid          TEXT NOT NULL UNIQUE,
    study_fk            INTEGER NOT NULL REFERENCES study(pk) ON DELETE CASCADE,
    modality            TEXT,
    series_number       INTEGER,
    description         TEXT,
    body_part           TEXT,
    series_date         TEXT,
    series_time         TEXT,
    pps_start_date      TEXT,
    pps_start_time      TEXT,
    station             TEXT,
    frame_of_reference  TEXT,
    n_instances         INTEGER NOT NULL DEFAULT 0,
    json                BLOB,      -- series level DICOM JSON
    attr_sop            TEXT,      -- the instance these attributes come from
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series (study_fk, series_number, series_uid);
CREATE INDEX IF NOT EXISTS series_modality ON series (modality, study_fk);

CREATE TABLE IF NOT EXISTS instance (
    pk               INTEGER PRIMARY KEY,
    sop_uid          TEXT NOT NULL UNIQUE,
    series_fk        INTEGER NOT NULL REFERENCES series(pk) ON DELETE CASCADE,
    study_fk         INTEGER NOT NULL,
    sop_class_uid    TEXT,
    instance_number  INTEGER,
    n_frames         INTEGER,
    rows             INTEGER,
    cols             INTEGER,
    bits_alloc       INTEGER,
    ts_uid           TEXT,
    rel_path         TEXT NOT NULL,
    size             INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_series ON instance (series_fk, instance_number, sop_uid);
-- covers the validator query of a study or series (count, newest change,
-- key sum: index_scope_stat), so that a metadata request on a cold page
-- cache reads a few index pages instead of every instance row; replaces
-- instance_study (study_fk), a prefix of it
DROP INDEX IF EXISTS instance_study;
CREATE INDEX IF NOT EXISTS instance_scope ON instance (study_fk, series_fk, created_ms);

-- kept apart so that scans of instance never page through blobs
CREATE TABLE IF NOT EXISTS instance_data (
    pk      INTEGER PRIMARY KEY REFERENCES instance(pk) ON DELETE CASCADE,
    meta    BLOB NOT NULL,     -- metablob.h
    layout  BLOB NOT NULL      -- layout.h
);

-- files whose rows are gone but which may still be on disk (delete journal)
CREATE TABLE IF NOT EXISTS pending_unlink (
    rel_path TEXT PRIMARY KEY
);
