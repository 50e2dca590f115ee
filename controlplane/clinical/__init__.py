"""Clinical records and rules: sessions, participants, consents, licences, clinical
records, the audit trail, field encryption, the database pool and migrations."""
