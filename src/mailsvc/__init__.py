"""mailsvc: a self-hosted, multi-tenant email API."""

__version__ = "0.1.0"
