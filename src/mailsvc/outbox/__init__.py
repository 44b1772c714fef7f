"""Sending; `smtp.py` is the only importer of aiosmtplib."""
