"""The only package that runs PostgreSQL binaries or speaks SQL to a source or a target.

Modules: runner (subprocess), binaries (bin dir per major version), ctl (initdb / pg_ctl),
conf (managed configuration files), passfile (libpq passfiles), basebackup (pg_basebackup),
sql (psycopg connections) and probes (named queries). Never imports `cloudmig.store`.
"""
