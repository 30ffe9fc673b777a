"""SQL store: SQLAlchemy Core tables and queries, Alembic migrations. SQLite by default."""
