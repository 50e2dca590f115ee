-- Clinical rooms (issue 13): a session's participants beyond its physician and
-- patient.  Clinicians (nurse, specialist, another physician) are licence-checked
-- when added; an interpreter or a companion (a family member or carer, who needs
-- the patient's 'companion' consent) can start, end or record nothing.
ALTER TABLE session_participants DROP CONSTRAINT session_participants_role_check;
ALTER TABLE session_participants ADD CONSTRAINT session_participants_role_check
    CHECK (role IN ('physician', 'patient', 'coordinator', 'admin',
                    'nurse', 'specialist', 'interpreter', 'companion'));
ALTER TABLE session_participants ADD COLUMN added_by text;
ALTER TABLE session_participants ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE consent_texts DROP CONSTRAINT consent_texts_purpose_check;
ALTER TABLE consent_texts ADD CONSTRAINT consent_texts_purpose_check
    CHECK (purpose IN ('teleconsultation', 'recording', 'data_sharing', 'companion'));
