"""Mailbox accounts: registration, credential checks, encrypted secrets, state."""
