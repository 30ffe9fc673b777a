"""Local PostgreSQL instances (initdb / pg_ctl) that are the migration targets."""
