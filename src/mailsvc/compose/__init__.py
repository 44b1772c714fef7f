"""Pure composition layer: what a user asks to send in, the exact bytes to send out.

No I/O and no database here (STYLE.md rule 7), so every rule is a plain unit test.

- `model` holds the inputs (`Composition`, `Mailbox`, `AttachmentSpec`,
  `OriginalMessage`) and the output (`BuiltMessage`).
- `validate` checks every user-supplied value and raises `CompositionError` naming
  the field; the API layer turns it into a 422, and the builder runs the same checks
  again so that nothing unchecked can be built.
- `reply` derives the subject, threading headers and quoted or forwarded text of a
  reply or forward from the original message.
- `build` turns a composition into `BuiltMessage`: the RFC 5322 bytes for SMTP DATA
  and IMAP APPEND, the envelope, and the Message-ID (`new_message_id` makes one).
"""
