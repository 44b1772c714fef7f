"""Domain-free building blocks: database, ids, crypto, pagination, host checks."""
