"""The IMAP side of mailsvc; `imap.py` is the only importer of aioimaplib."""
