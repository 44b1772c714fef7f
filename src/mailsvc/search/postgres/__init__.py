"""The PostgreSQL search backend: a narrow search table beside `messages` (see
backend.py)."""

from mailsvc.search.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
