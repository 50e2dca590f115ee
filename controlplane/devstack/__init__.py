"""Local processes for development and tests: Redis, PostgreSQL, the SFU node, the
control plane, and demo data."""
