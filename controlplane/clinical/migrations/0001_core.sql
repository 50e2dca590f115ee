-- Core records: clinicians and the CFM licence registry, consent (LGPD),
-- sessions and their participants, clinical documentation (encrypted), and the
-- append-only, hash-chained audit log.  Every table carries a data
-- classification: public, internal, personal, sensitive or confidential.

CREATE TABLE clinicians (
    id              text PRIMARY KEY,
    crm             text NOT NULL,
    uf              char(2) NOT NULL,
    specialties     text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    classification  text NOT NULL DEFAULT 'personal'
);

CREATE TABLE licence_registry (
    crm                      text NOT NULL,
    uf                       char(2) NOT NULL,
    status                   text NOT NULL CHECK (status IN ('active', 'suspended', 'cancelled')),
    telemedicine_authorized  boolean NOT NULL,
    specialties              text[] NOT NULL DEFAULT '{}',
    source                   text NOT NULL DEFAULT 'manual',
    updated_at               timestamptz NOT NULL DEFAULT now(),
    classification           text NOT NULL DEFAULT 'internal',
    PRIMARY KEY (crm, uf)
);

CREATE TABLE consent_texts (
    purpose         text NOT NULL CHECK (purpose IN ('teleconsultation', 'recording', 'data_sharing')),
    version         integer NOT NULL CHECK (version > 0),
    body            text NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    classification  text NOT NULL DEFAULT 'public',
    PRIMARY KEY (purpose, version)
);

CREATE TABLE consents (
    id              bigserial PRIMARY KEY,
    patient_id      text NOT NULL,
    purpose         text NOT NULL,
    version         integer NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    granted_by      text NOT NULL,
    revoked_at      timestamptz,
    revoked_by      text,
    classification  text NOT NULL DEFAULT 'personal',
    FOREIGN KEY (purpose, version) REFERENCES consent_texts (purpose, version)
);
CREATE INDEX consents_patient ON consents (patient_id, purpose);

CREATE TABLE sessions (
    id                          uuid PRIMARY KEY,
    room_id                     text NOT NULL UNIQUE,
    patient_id                  text NOT NULL,
    physician_id                text NOT NULL REFERENCES clinicians (id),
    session_type                text NOT NULL,
    specialty                   text NOT NULL,
    scheduled_for               timestamptz NOT NULL,
    estimated_duration_minutes  integer NOT NULL,
    clinic_id                   text NOT NULL,
    notes_enc                   bytea,
    status                      text NOT NULL DEFAULT 'scheduled'
                                CHECK (status IN ('scheduled', 'active', 'ended', 'cancelled')),
    recording_enabled           boolean NOT NULL DEFAULT false,
    licence_verified            boolean NOT NULL DEFAULT false,
    consent_obtained            boolean NOT NULL DEFAULT false,
    created_by                  text NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    started_at                  timestamptz,
    ended_at                    timestamptz,
    end_reason                  text,
    duration_seconds            double precision,
    last_activity_at            timestamptz,
    classification              text NOT NULL DEFAULT 'sensitive'
);
CREATE INDEX sessions_status ON sessions (status);
CREATE INDEX sessions_patient ON sessions (patient_id);
CREATE INDEX sessions_physician ON sessions (physician_id);

CREATE TABLE session_participants (
    session_id      uuid NOT NULL REFERENCES sessions (id),
    participant_id  text NOT NULL,
    role            text NOT NULL CHECK (role IN ('physician', 'patient', 'coordinator', 'admin')),
    classification  text NOT NULL DEFAULT 'personal',
    PRIMARY KEY (session_id, participant_id)
);

CREATE TABLE clinical_records (
    id              uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES sessions (id),
    author_id       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('note', 'prescription', 'followup')),
    body_enc        bytea NOT NULL,
    due_at          timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    classification  text NOT NULL DEFAULT 'confidential'
);
CREATE INDEX clinical_records_session ON clinical_records (session_id);

CREATE TABLE audit_log (
    id              bigint PRIMARY KEY,
    at              timestamptz NOT NULL,
    actor_id        text,
    actor_role      text,
    action          text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    resource_type   text,
    resource_id     text,
    session_id      uuid,
    classification  text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL
);
CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE INDEX audit_log_session ON audit_log (session_id);

-- The newest entry, so removing entries from the end of the chain is detected too.
CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL,
    last_hash  bytea NOT NULL
);

-- Append-only, even for the table owner (the app role has no UPDATE/DELETE grant either).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
