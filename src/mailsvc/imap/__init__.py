"""The IMAP adapter every domain uses; the only importer of aioimaplib.

- `connection`: `ImapConnection` and how to open one (`imap_session`, `connect_imap`,
  `check_imap_login`); `protocol` holds the aioimaplib classes it is built on.
- `wire`: pure parsers of server responses; `uids`: UID sets and UIDPLUS answers;
  `names`: mailbox names on the wire.
- `mailboxes`: what a LIST entry means (its role, whether it can be selected).
- `errors`: `ImapError` and its kinds; anything a server sends that cannot be read
  is an `ImapProtocolError`.

It imports no domain package: sync, message actions, drafts and the outbox build on it.
"""
