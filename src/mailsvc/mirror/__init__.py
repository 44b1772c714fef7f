"""The mirror: how the PostgreSQL copy of a mailbox is written.

Mailboxes, message rows and their threads are stored and changed here, whoever
learned of the change: the sync engine (what it fetched from the server) and the
message actions (what they changed on the server themselves). The read side of the
same rows is `message/` and `thread/`; the sync engine that decides what to fetch
is `sync/`.

- `repository`: mailboxes and message rows (`MailboxRepository`, `MirrorRepository`);
- `thread_repository` + `threading`: thread links on Message-ID (JWZ) as messages are stored;
- `server_changes`: flags and expunges reported by a server, with their change events.
"""
