"""Drafts: messages being composed, their uploaded attachments, and sending them."""
