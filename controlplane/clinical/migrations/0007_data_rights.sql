-- The patient's data rights (issue 15).
--
-- Signed checkpoints of the audit chain: the HMAC key is derived from the control
-- plane's data key (TELEMED_DATA_KEYS), which the database does not hold, so
-- rewriting audit rows and recomputing every hash after them no longer matches a
-- checkpoint.  Append-only for the app role (see db.grant_app_role).
CREATE TABLE audit_checkpoints (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    last_id         bigint NOT NULL,
    last_hash       bytea NOT NULL,
    key_id          smallint NOT NULL,
    mac             bytea NOT NULL,
    classification  text NOT NULL DEFAULT 'internal'
);

-- Each verification of the chain (incremental or full) and what it found.
CREATE TABLE audit_verifications (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    scope           text NOT NULL CHECK (scope IN ('incremental', 'full')),
    status          text NOT NULL CHECK (status IN ('ok', 'broken')),
    entries         bigint NOT NULL,
    first_bad_id    bigint,
    reason          text,
    classification  text NOT NULL DEFAULT 'internal'
);
CREATE INDEX audit_verifications_scope ON audit_verifications (scope, id);

-- Erasure requests (LGPD art. 18, VI): who asked, when, what was erased and what
-- a legal duty keeps (categories and counts, never the erased values).
CREATE TABLE erasure_requests (
    id              uuid PRIMARY KEY,
    patient_id      text NOT NULL,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    erased          jsonb NOT NULL DEFAULT '{}',
    kept            jsonb NOT NULL DEFAULT '[]',
    classification  text NOT NULL DEFAULT 'personal'
);
CREATE INDEX erasure_requests_patient ON erasure_requests (patient_id);

-- Audit search by actor and time.
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_resource ON audit_log (resource_id, id);
