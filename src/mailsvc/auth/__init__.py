"""Authentication and tenancy: API keys, JWTs, principals, scopes."""
