"""The Tantivy search backend: one index directory per tenant (see backend.py)."""

from mailsvc.search.tantivy.backend import TantivyBackend
from mailsvc.search.tantivy.store import IndexBusy

__all__ = ["IndexBusy", "TantivyBackend"]
