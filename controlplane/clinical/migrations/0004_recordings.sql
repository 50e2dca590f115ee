-- Recordings of consultations (issue 12).  The media file is age ciphertext on the
-- SFU node's disk; the only key that opens it is the per-recording age identity,
-- stored here wrapped (AES-256-GCM) by the configured key-encryption key.
-- Deleting a recording sets wrapped_key to NULL (crypto-shredding) and keeps the
-- row (who recorded what, when) for the audit trail.
CREATE TABLE recordings (
    id              uuid PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES sessions (id),
    status          text NOT NULL CHECK (status IN ('recording', 'completed', 'failed', 'deleted')),
    started_by      text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz,
    duration_ms     bigint,
    bytes           bigint,
    sha256          text,
    tracks          jsonb NOT NULL DEFAULT '[]',
    node_id         text NOT NULL,
    file            text,
    wrapped_key     bytea,
    stop_reason     text,
    failure         text
);
CREATE INDEX recordings_session ON recordings (session_id);
CREATE UNIQUE INDEX recordings_one_live_per_session ON recordings (session_id)
    WHERE status = 'recording';
