-- Call-quality alerts: raised and cleared, by rule, consultation and participant.
CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    rule            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    room_id         text NOT NULL,
    session_id      uuid,
    participant_id  text NOT NULL,
    call_type       text NOT NULL,
    description     text NOT NULL,
    raised_at       timestamptz NOT NULL DEFAULT now(),
    cleared_at      timestamptz,
    classification  text NOT NULL DEFAULT 'internal'
);
CREATE INDEX alerts_open ON alerts (room_id, participant_id, rule) WHERE cleared_at IS NULL;
CREATE INDEX alerts_session ON alerts (session_id);
