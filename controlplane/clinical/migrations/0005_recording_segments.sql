-- A recording is written in segments (issue 12): a producer that appears
-- mid-recording (a screen share, a late participant) starts a new segment on the
-- SFU node, because a Matroska file declares its tracks up front.  Each segment is
-- its own age file; the control plane joins them when the recording is read.
-- Each element: {index, file, bytes, sha256, startedAt, stoppedAt, streams}.
ALTER TABLE recordings ADD COLUMN segments jsonb NOT NULL DEFAULT '[]';
UPDATE recordings
   SET segments = jsonb_build_array(jsonb_build_object(
           'index', 0, 'file', file, 'bytes', bytes, 'sha256', sha256,
           'startedAt', (extract(epoch FROM started_at) * 1000)::bigint,
           'stoppedAt', (extract(epoch FROM stopped_at) * 1000)::bigint,
           'streams', tracks))
 WHERE file IS NOT NULL;
