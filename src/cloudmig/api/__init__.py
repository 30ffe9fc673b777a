"""The RDS OpenAPI front: signatures, request parsing, response rendering, actions."""
