"""The change log and what reads it (feed, SSE, webhooks)."""
