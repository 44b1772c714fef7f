"""Conversations: grouping messages into threads, and reading them."""
