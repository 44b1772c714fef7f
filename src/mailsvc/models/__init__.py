"""Every ORM table; alembic's env.py imports this package to see the whole schema."""

from mailsvc.kit.db import Base
from mailsvc.models.account import Account
from mailsvc.models.api_key import ApiKey
from mailsvc.models.attachment import Attachment
from mailsvc.models.change import Change, ChangeTrim
from mailsvc.models.draft import Draft, DraftAttachment
from mailsvc.models.mailbox import Mailbox
from mailsvc.models.message import Message
from mailsvc.models.oauth_app import OAuthApp
from mailsvc.models.outbox import OutboxMessage
from mailsvc.models.search import MessageSearch, SearchIndexStateRow
from mailsvc.models.search_queue import SearchQueueEntry
from mailsvc.models.thread import Thread
from mailsvc.models.webhook import Webhook
from mailsvc.models.webhook_delivery import WebhookDelivery

__all__ = [
    "Account",
    "ApiKey",
    "Attachment",
    "Base",
    "Change",
    "ChangeTrim",
    "Draft",
    "DraftAttachment",
    "Mailbox",
    "Message",
    "MessageSearch",
    "OAuthApp",
    "OutboxMessage",
    "SearchIndexStateRow",
    "SearchQueueEntry",
    "Thread",
    "Webhook",
    "WebhookDelivery",
]
