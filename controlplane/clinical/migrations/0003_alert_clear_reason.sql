-- Why an alert was cleared: the condition went away ('resolved') or the
-- participant left the call ('participant_left').
ALTER TABLE alerts ADD COLUMN clear_reason text;
