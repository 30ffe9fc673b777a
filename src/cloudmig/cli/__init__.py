"""The `cloudmig` command."""
