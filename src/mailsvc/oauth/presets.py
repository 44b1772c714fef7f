"""What Google and Microsoft 365 need, so a tenant registers an app with a client id (PURE).

Endpoints, scopes and mail servers as each provider documents them:
- Google: developers.google.com/identity/protocols/oauth2/web-server and
  developers.google.com/gmail/imap/xoauth2-protocol (scope `https://mail.google.com/`;
  `access_type=offline` and `prompt=consent` so the code grant returns a refresh token
  every time, not only at the first consent).
- Microsoft: learn.microsoft.com/exchange/client-developer/legacy-protocols/
  how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth (the outlook.office.com
  IMAP and SMTP scopes; `offline_access` for a refresh token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailsvc.kit.mailserver import Security

Provider = Literal["google", "microsoft", "generic"]


@dataclass(frozen=True, slots=True)
class ServerPreset:
    host: str
    port: int
    security: Security


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """The defaults of one provider; every field can be overridden per app."""

    authorization_url: str
    token_url: str
    userinfo_url: str | None
    scopes: tuple[str, ...]
    imap: ServerPreset
    smtp: ServerPreset
    # Added to the authorization URL.
    authorize_parameters: dict[str, str] = field(default_factory=dict)
    # The SMTP server files each sent message in Sent itself: appending a copy too
    # would show it twice (SendOptions.sent_copy "provider").
    files_sent_mail: bool = False


PRESETS: dict[str, ProviderPreset] = {
    "google": ProviderPreset(
        authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
        scopes=("https://mail.google.com/", "openid", "email"),
        imap=ServerPreset("imap.gmail.com", 993, Security.TLS),
        smtp=ServerPreset("smtp.gmail.com", 465, Security.TLS),
        authorize_parameters={"access_type": "offline", "prompt": "consent"},
        files_sent_mail=True,
    ),
    "microsoft": ProviderPreset(
        # "common": work, school and personal accounts; a single-tenant app overrides
        # both URLs with its directory's id in place of "common".
        authorization_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
        # Microsoft's userinfo is Graph's, for Graph tokens only: the id_token names the user.
        userinfo_url=None,
        scopes=(
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
            "openid",
            "email",
        ),
        imap=ServerPreset("outlook.office365.com", 993, Security.TLS),
        smtp=ServerPreset("smtp.office365.com", 587, Security.STARTTLS),
        files_sent_mail=True,
    ),
}


def authorize_parameters(provider: str) -> dict[str, str]:
    """Extra authorization-request parameters the provider needs for a refresh token."""
    preset = PRESETS.get(provider)
    return dict(preset.authorize_parameters) if preset is not None else {}


def files_sent_mail(provider: str) -> bool:
    """Whether the provider's SMTP server keeps a copy of what is sent in Sent."""
    preset = PRESETS.get(provider)
    return preset is not None and preset.files_sent_mail
