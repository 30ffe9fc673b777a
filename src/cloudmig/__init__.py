"""cloudmig: self-hosted PostgreSQL cloud migration that speaks the RDS OpenAPI."""

__version__ = "0.1.0"
