"""The SMTP adapter: one session with an account's submission server, command by command.

The only importer of aiosmtplib. The outbox's delivery and the account check build on it.
"""
