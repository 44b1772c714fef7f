"""The requests the golden tests record: each `Call` is one golden file.

Ids come from `tests.golden.mailbox`, so every URL is a constant. A call that pages
follows the `next_cursor` of each answer for `pages` pages. Calls whose answer comes
(partly) from the search backend (`q=` with free text or `from:`/`to:`/`subject:`,
the `from`/`to` parameters, `/api/sync/search`) are asked of each backend.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import quote, urlencode

from tests.golden.mailbox import (
    ACCOUNT,
    INBOX,
    MESSAGES,
    OTHER_ACCOUNT,
    OTHER_INBOX,
    OTHER_MESSAGE,
    OTHER_TENANT,
    OTHER_THREAD,
    PROJECTS,
    THREADS,
    UNGRANTED_TENANT,
    UNKNOWN,
    ZURICH,
)

Auth = Literal[
    "reader",
    "no-mail-read",
    "no-accounts-read",
    "other-tenant",
    "two-tenants",
    "expired",
    "garbage",
    "basic",
    "none",
]
"""Who asks: `reader` holds every scope for tenant A (`golden-a`); `no-mail-read` and
`no-accounts-read` lack one scope; `other-tenant` is tenant B's; `two-tenants` grants
both (and needs `X-Tenant-ID`); the rest are broken or missing credentials."""


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded request (and the pages that follow it)."""

    name: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    auth: Auth = "reader"
    tenant_header: str | None = None
    pages: int = 1
    searches: bool = False

    @property
    def url(self) -> str:
        """Path and query string, exactly as sent (and recorded)."""
        if not self.params:
            return self.path
        return f"{self.path}?{urlencode(self.params, quote_via=quote)}"


def _call(
    name: str,
    path: str,
    *,
    auth: Auth = "reader",
    tenant_header: str | None = None,
    pages: int = 1,
    searches: bool = False,
    **params: str | uuid.UUID,
) -> Call:
    """A call; `params` in the given order, `from_` sent as `from`."""
    query = tuple((key.rstrip("_"), str(value)) for key, value in params.items())
    return Call(name, path, query, auth, tenant_header, pages, searches)


def cursor(position: dict[str, object]) -> str:
    """A cursor as the service encodes one (base64url of compact JSON, unpadded), to
    hand it cursors of another order, another route or another shape."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MESSAGES_PATH = "/api/messages"
SEARCH_PATH = "/api/sync/search"
THREADS_PATH = "/api/threads"
MAILBOXES_PATH = f"/api/accounts/{ACCOUNT}/mailboxes"
STATUS_PATH = f"/api/sync/status/{ACCOUNT}"


def message_path(message_id: uuid.UUID | str) -> str:
    return f"{MESSAGES_PATH}/{message_id}"


def thread_path(thread_id: uuid.UUID | str) -> str:
    return f"{THREADS_PATH}/{thread_id}"


# A newest-first cursor after `lunch-1`, as the service issues it.
_LUNCH_NEWEST = cursor(
    {"o": "newest", "k": "2026-03-05T08:00:00+00:00", "i": str(MESSAGES["lunch-1"])}
)
_THREAD_CURSOR = cursor({"t": "2026-03-06T09:00:00+00:00", "i": str(THREADS["contract"])})

MESSAGE_LISTS: tuple[Call, ...] = (
    _call("messages.all", MESSAGES_PATH),
    _call("messages.limit-3", MESSAGES_PATH, pages=3, limit="3"),
    _call("messages.oldest", MESSAGES_PATH, pages=2, order="oldest", limit="3"),
    _call("messages.relevance-without-query", MESSAGES_PATH, pages=2, order="relevance",
          limit="1"),
    _call("messages.crafted-cursor", MESSAGES_PATH, limit="3", cursor=_LUNCH_NEWEST),
    _call("messages.mailbox-inbox", MESSAGES_PATH, mailbox="inbox", limit="3", pages=2),
    _call("messages.mailbox-sent", MESSAGES_PATH, mailbox="sent"),
    _call("messages.mailbox-trash", MESSAGES_PATH, mailbox="trash"),
    _call("messages.mailbox-archive", MESSAGES_PATH, mailbox="archive"),
    _call("messages.mailbox-drafts", MESSAGES_PATH, mailbox="drafts"),
    _call("messages.mailbox-id", MESSAGES_PATH, mailbox=ZURICH.id),
    _call("messages.mailbox-id-uppercase", MESSAGES_PATH, mailbox=str(INBOX.id).upper(),
          limit="2"),
    _call("messages.mailbox-not-selectable", MESSAGES_PATH, mailbox=PROJECTS.id),
    _call("messages.account", MESSAGES_PATH, account_id=ACCOUNT, limit="3"),
    _call("messages.account-of-other-tenant", MESSAGES_PATH, account_id=OTHER_ACCOUNT),
    _call("messages.account-and-role", MESSAGES_PATH, account_id=ACCOUNT, mailbox="sent"),
    _call("messages.thread", MESSAGES_PATH, thread_id=THREADS["budget"]),
    _call("messages.thread-oldest", MESSAGES_PATH, thread_id=THREADS["budget"], order="oldest",
          limit="2"),
    _call("messages.thread-of-other-tenant", MESSAGES_PATH, thread_id=OTHER_THREAD),
    _call("messages.unread", MESSAGES_PATH, unread="true"),
    _call("messages.read", MESSAGES_PATH, unread="false", limit="3", pages=2),
    _call("messages.flagged", MESSAGES_PATH, flagged="true"),
    _call("messages.not-flagged", MESSAGES_PATH, flagged="false", limit="3"),
    _call("messages.with-attachments", MESSAGES_PATH, has_attachments="true"),
    _call("messages.without-attachments", MESSAGES_PATH, has_attachments="false", limit="3"),
    _call("messages.after", MESSAGES_PATH, after="2026-03-06T00:00:00Z", limit="4"),
    _call("messages.before", MESSAGES_PATH, before="2026-03-02T09:00:00Z"),
    # Both messages received at 09:15 are inside, and the first page ends between them.
    _call("messages.between", MESSAGES_PATH, after="2026-03-03T00:00:00Z",
          before="2026-03-04T00:00:00Z", limit="2", pages=3),
    # 11:00+01:00 is when `invoice-2` arrived: `after` includes its bound.
    _call("messages.after-with-offset", MESSAGES_PATH, after="2026-03-08T11:00:00+01:00"),
    _call("messages.inbox-unread-attachments", MESSAGES_PATH, mailbox="inbox", unread="true",
          has_attachments="true"),
    _call("messages.inbox-flagged-oldest", MESSAGES_PATH, mailbox="inbox", flagged="true",
          order="oldest"),
    # Operators that need no search index: mailbox, flag and date filters.
    _call("messages.q-in-inbox", MESSAGES_PATH, q="in:inbox", limit="2"),
    _call("messages.q-label", MESSAGES_PATH, q="label:projects/zürich"),
    _call("messages.q-is-unread", MESSAGES_PATH, q="is:unread", limit="3"),
    _call("messages.q-is-starred-read", MESSAGES_PATH, q="is:starred is:read", limit="2"),
    _call("messages.q-has-attachment", MESSAGES_PATH, q="has:attachment in:inbox", limit="2"),
    _call("messages.q-dates", MESSAGES_PATH, q="after:2026/03/03 before:2026/03/05", limit="3"),
    _call("messages.q-and-filter-agree", MESSAGES_PATH, q="is:unread", unread="true",
          mailbox="inbox", limit="3"),
    _call("messages.tenant-b", MESSAGES_PATH, auth="other-tenant"),
    _call("messages.two-tenants-choose-a", MESSAGES_PATH, auth="two-tenants",
          tenant_header="golden-a", limit="2"),
    _call("messages.two-tenants-choose-b", MESSAGES_PATH, auth="two-tenants",
          tenant_header=OTHER_TENANT),
)  # fmt: skip

SEARCHES: tuple[Call, ...] = tuple(
    Call(c.name, c.path, c.params, c.auth, c.tenant_header, c.pages, searches=True)
    for c in (
        _call("search.word", MESSAGES_PATH, q="budget"),
        _call("search.word-relevance", MESSAGES_PATH, q="budget", order="relevance", limit="2",
              pages=2),
        _call("search.word-oldest", MESSAGES_PATH, q="budget", order="oldest", limit="2",
              pages=2),
        _call("search.words", MESSAGES_PATH, q="quarterly report"),
        _call("search.phrase", MESSAGES_PATH, q='"quarterly report"'),
        _call("search.phrase-relevance", MESSAGES_PATH, q='"quarterly report"',
              order="relevance", limit="2"),
        _call("search.from-name", MESSAGES_PATH, q="from:carol"),
        _call("search.from-address", MESSAGES_PATH, q="from:billing@globex.test"),
        _call("search.to", MESSAGES_PATH, q="to:bob"),
        _call("search.subject", MESSAGES_PATH, q="subject:invoice"),
        _call("search.unread", MESSAGES_PATH, q="budget is:unread"),
        _call("search.attachment", MESSAGES_PATH, q="has:attachment budget"),
        _call("search.in-inbox", MESSAGES_PATH, q="in:inbox budget", limit="2"),
        _call("search.or", MESSAGES_PATH, q="invoice OR lunch"),
        _call("search.exclusion", MESSAGES_PATH, q="report -quarterly"),
        _call("search.exclude-sender", MESSAGES_PATH, q="budget -from:bob"),
        _call("search.cyrillic", MESSAGES_PATH, q="отчёт"),
        _call("search.cyrillic-without-yo", MESSAGES_PATH, q="отчет", order="relevance"),
        _call("search.german", MESSAGES_PATH, q="Straße"),
        _call("search.german-umlaut", MESSAGES_PATH, q="grüße"),
        _call("search.french", MESSAGES_PATH, q="réunion"),
        _call("search.nothing-found", MESSAGES_PATH, q="zebra"),
        _call("search.with-filters", MESSAGES_PATH, q="budget", mailbox="inbox", flagged="true"),
        _call("search.with-dates", MESSAGES_PATH, q="budget", after="2026-03-03T00:00:00Z",
              limit="2"),
        _call("search.account", MESSAGES_PATH, q="budget", account_id=ACCOUNT, limit="2"),
        _call("search.account-of-other-tenant", MESSAGES_PATH, q="budget",
              account_id=OTHER_ACCOUNT),
        _call("search.thread", MESSAGES_PATH, q="report", thread_id=THREADS["budget"]),
        _call("search.param-from", MESSAGES_PATH, from_="carol"),
        _call("search.param-to", MESSAGES_PATH, to="bob@example.test", limit="2"),
        _call("search.param-from-and-filters", MESSAGES_PATH, from_="bob", mailbox="inbox",
              unread="false"),
        _call("search.tenant-b", MESSAGES_PATH, auth="other-tenant", q="budget"),
        _call("sync-search.default", SEARCH_PATH, query="report", limit="3"),
        _call("sync-search.paged-oldest", SEARCH_PATH, query="quarterly report", order="oldest",
              limit="2", pages=2),
        _call("sync-search.newest", SEARCH_PATH, query="budget", order="newest", limit="3"),
        _call("sync-search.account", SEARCH_PATH, query="budget", account_id=ACCOUNT, limit="1"),
        _call("threads.q", THREADS_PATH, q="budget"),
        _call("threads.q-paged", THREADS_PATH, q="report", limit="2", pages=2),
        _call("threads.param-from", THREADS_PATH, from_="carol"),
        _call("threads.q-and-mailbox", THREADS_PATH, q="budget", mailbox="sent"),
    )
)  # fmt: skip

THREAD_LISTS: tuple[Call, ...] = (
    *(
        _call(f"thread.{key}", thread_path(THREADS[key]))
        for key in ("budget", "zurich", "invoice", "offsite", "alert", "contract")
    ),
    _call("threads.all", THREADS_PATH),
    _call("threads.limit-3", THREADS_PATH, limit="3", pages=3),
    _call("threads.crafted-cursor", THREADS_PATH, limit="2", cursor=_THREAD_CURSOR),
    _call("threads.account", THREADS_PATH, account_id=ACCOUNT, limit="4"),
    _call("threads.account-of-other-tenant", THREADS_PATH, account_id=OTHER_ACCOUNT),
    _call("threads.mailbox-inbox", THREADS_PATH, mailbox="inbox", limit="3"),
    _call("threads.mailbox-sent", THREADS_PATH, mailbox="sent"),
    _call("threads.mailbox-trash", THREADS_PATH, mailbox="trash"),
    _call("threads.mailbox-id", THREADS_PATH, mailbox=ZURICH.id),
    _call("threads.unread", THREADS_PATH, unread="true"),
    _call("threads.read", THREADS_PATH, unread="false", limit="3"),
    _call("threads.flagged", THREADS_PATH, flagged="true"),
    _call("threads.with-attachments", THREADS_PATH, has_attachments="true"),
    _call("threads.after", THREADS_PATH, after="2026-03-06T00:00:00Z"),
    _call("threads.before", THREADS_PATH, before="2026-03-03T00:00:00Z"),
    _call("threads.q-is-unread", THREADS_PATH, q="is:unread"),
    _call("threads.tenant-b", THREADS_PATH, auth="other-tenant"),
)  # fmt: skip

MESSAGE_READS: tuple[Call, ...] = (
    _call("message.plain", message_path(MESSAGES["lunch-1"])),
    _call("message.quoted-reply", message_path(MESSAGES["budget-2"])),
    _call("message.reply-with-signature", message_path(MESSAGES["offsite-3"])),
    _call("message.cyrillic-reply", message_path(MESSAGES["otchet-2"])),
    _call("message.attachment", message_path(MESSAGES["budget-3"])),
    _call("message.unnamed-attachment", message_path(MESSAGES["zurich-2"])),
    _call("message.two-senders", message_path(MESSAGES["zurich-1"])),
    _call("message.html", message_path(MESSAGES["invoice-1"])),
    _call("message.html-allow-remote", message_path(MESSAGES["invoice-1"]), allow_remote="true"),
    _call("message.html-form", message_path(MESSAGES["invoice-2"]), allow_remote="false"),
    _call("message.html-form-allow-remote", message_path(MESSAGES["invoice-2"]),
          allow_remote="true"),
    _call("message.html-iframe", message_path(MESSAGES["offsite-1"])),
    _call("message.html-only", message_path(MESSAGES["prize"])),
    _call("message.missing-cid", message_path(MESSAGES["welcome"])),
    _call("message.parse-error", message_path(MESSAGES["alert-2"])),
    _call("message.nothing", message_path(MESSAGES["nothing"])),
    _call("message.archived", message_path(MESSAGES["contract-1"])),
    _call("message.uppercase-id", message_path(str(MESSAGES["welcome"]).upper())),
    _call("message.tenant-b", message_path(OTHER_MESSAGE), auth="other-tenant"),
)  # fmt: skip

ACCOUNT_READS: tuple[Call, ...] = (
    _call("mailboxes.account", MAILBOXES_PATH),
    # The mailbox list needs mail:read, not accounts:read.
    _call("mailboxes.without-accounts-read", MAILBOXES_PATH, auth="no-accounts-read"),
    _call("mailboxes.tenant-b", f"/api/accounts/{OTHER_ACCOUNT}/mailboxes", auth="other-tenant"),
    _call("sync-status.account", STATUS_PATH),
    # The status needs accounts:read, not mail:read.
    _call("sync-status.without-mail-read", STATUS_PATH, auth="no-mail-read"),
    _call("sync-status.tenant-b", f"/api/sync/status/{OTHER_ACCOUNT}", auth="other-tenant"),
)  # fmt: skip

# One call to each hot route, for the auth failures every route shares.
HOT_ROUTES: dict[str, Call] = {
    "messages": _call("", MESSAGES_PATH),
    "sync-search": _call("", SEARCH_PATH, query="budget"),
    "message": _call("", message_path(MESSAGES["lunch-1"])),
    "threads": _call("", THREADS_PATH),
    "thread": _call("", thread_path(THREADS["lunch"])),
    "mailboxes": _call("", MAILBOXES_PATH),
    "sync-status": _call("", STATUS_PATH),
}


def _route_call(name: str, route: str, *, auth: Auth, tenant_header: str | None = None) -> Call:
    return replace(HOT_ROUTES[route], name=name, auth=auth, tenant_header=tenant_header)


_AUTH_ERRORS: tuple[Call, ...] = (
    *(
        call
        for route in HOT_ROUTES
        for call in (
            _route_call(f"error.no-token.{route}", route, auth="none"),
            _route_call(f"error.no-scope.{route}", route,
                        auth="no-accounts-read" if route == "sync-status" else "no-mail-read"),
            _route_call(f"error.tenant-not-granted.{route}", route, auth="reader",
                        tenant_header=UNGRANTED_TENANT),
        )
    ),
    _route_call("error.expired-token", "messages", auth="expired"),
    _route_call("error.garbage-token", "messages", auth="garbage"),
    _route_call("error.basic-auth", "messages", auth="basic"),
    _route_call("error.tenant-required", "messages", auth="two-tenants"),
    _route_call("error.tenant-of-other-token", "messages", auth="reader",
                tenant_header=OTHER_TENANT),
)  # fmt: skip

_OTHER_NEWEST = cursor({"o": "newest", "k": 1.5, "i": str(MESSAGES["lunch-1"])})
_RELEVANCE = cursor({"o": "relevance", "k": 1.5, "i": str(MESSAGES["lunch-1"])})

_INPUT_ERRORS: tuple[Call, ...] = (
    _call("error.cursor-malformed", MESSAGES_PATH, cursor="nonsense"),
    _call("error.cursor-not-an-object", MESSAGES_PATH,
          cursor=base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=")),
    _call("error.cursor-characters", MESSAGES_PATH, cursor="not a cursor!"),
    _call("error.cursor-too-long", MESSAGES_PATH, cursor="A" * 513),
    _call("error.cursor-of-other-order", MESSAGES_PATH, order="oldest", cursor=_LUNCH_NEWEST),
    _call("error.cursor-score-for-date-order", MESSAGES_PATH, cursor=_OTHER_NEWEST),
    _call("error.cursor-date-for-relevance", MESSAGES_PATH, q="budget", order="relevance",
          cursor=_LUNCH_NEWEST),
    _call("error.cursor-relevance-for-list", MESSAGES_PATH, cursor=_RELEVANCE),
    _call("error.cursor-of-threads", MESSAGES_PATH, cursor=_THREAD_CURSOR),
    _call("error.cursor-bad-id", MESSAGES_PATH,
          cursor=cursor({"o": "newest", "k": "2026-03-05T08:00:00+00:00", "i": "x"})),
    _call("error.cursor-naive-time", MESSAGES_PATH,
          cursor=cursor({"o": "newest", "k": "2026-03-05T08:00:00", "i": str(UNKNOWN)})),
    _call("error.threads-cursor-malformed", THREADS_PATH, cursor="nonsense"),
    _call("error.threads-cursor-of-messages", THREADS_PATH, cursor=_LUNCH_NEWEST),
    _call("error.sync-search-cursor-malformed", SEARCH_PATH, query="budget", cursor="nonsense"),
    _call("error.sync-search-cursor-of-other-order", SEARCH_PATH, query="budget",
          cursor=_LUNCH_NEWEST),
    _call("error.message-unknown", message_path(UNKNOWN)),
    _call("error.message-of-other-tenant", message_path(OTHER_MESSAGE)),
    _call("error.message-bad-id", message_path("not-a-uuid")),
    _call("error.message-allow-remote-not-bool", message_path(MESSAGES["lunch-1"]),
          allow_remote="perhaps"),
    _call("error.thread-unknown", thread_path(UNKNOWN)),
    _call("error.thread-of-other-tenant", thread_path(OTHER_THREAD)),
    _call("error.thread-bad-id", thread_path("42")),
    _call("error.mailboxes-unknown-account", f"/api/accounts/{UNKNOWN}/mailboxes"),
    _call("error.mailboxes-of-other-tenant", f"/api/accounts/{OTHER_ACCOUNT}/mailboxes"),
    _call("error.mailboxes-bad-id", "/api/accounts/not-a-uuid/mailboxes"),
    _call("error.sync-status-unknown-account", f"/api/sync/status/{UNKNOWN}"),
    _call("error.sync-status-of-other-tenant", f"/api/sync/status/{OTHER_ACCOUNT}"),
    _call("error.sync-status-bad-id", "/api/sync/status/not-a-uuid"),
    _call("error.mailbox-unknown", MESSAGES_PATH, mailbox=UNKNOWN),
    _call("error.mailbox-of-other-tenant", MESSAGES_PATH, mailbox=OTHER_INBOX.id),
    _call("error.mailbox-not-a-role", MESSAGES_PATH, mailbox="nowhere"),
    _call("error.threads-mailbox-unknown", THREADS_PATH, mailbox=UNKNOWN),
    _call("error.threads-mailbox-of-other-tenant", THREADS_PATH, mailbox=OTHER_INBOX.id),
    _call("error.account-filter-bad-id", MESSAGES_PATH, account_id="not-a-uuid"),
    _call("error.thread-filter-bad-id", MESSAGES_PATH, thread_id="nope"),
    _call("error.threads-account-filter-bad-id", THREADS_PATH, account_id="zzz"),
    _call("error.limit-zero", MESSAGES_PATH, limit="0"),
    _call("error.limit-too-large", MESSAGES_PATH, limit="1000"),
    _call("error.limit-not-a-number", MESSAGES_PATH, limit="ten"),
    _call("error.threads-limit-zero", THREADS_PATH, limit="0"),
    _call("error.threads-limit-too-large", THREADS_PATH, limit="1000"),
    _call("error.sync-search-limit-too-large", SEARCH_PATH, query="budget", limit="1000"),
    _call("error.flag-not-bool", MESSAGES_PATH, unread="maybe"),
    _call("error.date-not-rfc3339", MESSAGES_PATH, after="yesterday"),
    _call("error.date-without-offset", MESSAGES_PATH, before="2026-03-03T00:00:00"),
    _call("error.order-unknown", MESSAGES_PATH, order="random"),
    _call("error.query-bad-date", MESSAGES_PATH, q="before:2024-13-45"),
    _call("error.query-operator-without-value", MESSAGES_PATH, q="from:"),
    _call("error.query-unknown-flag", MESSAGES_PATH, q="is:sparkly"),
    _call("error.query-nul", MESSAGES_PATH, q="budget\x00"),
    _call("error.query-too-long", MESSAGES_PATH, q="b" * 1001),
    _call("error.query-contradicts-filter", MESSAGES_PATH, q="is:read", unread="true"),
    _call("error.query-contradicts-itself", MESSAGES_PATH, q="is:read is:unread"),
    _call("error.sync-search-without-query", SEARCH_PATH),
    _call("error.sync-search-empty-query", SEARCH_PATH, query=""),
    _call("error.sync-search-bad-query", SEARCH_PATH, query="before:2024-13-45"),
    _call("error.threads-bad-query", THREADS_PATH, q="after:someday"),
    _call("error.threads-contradictory", THREADS_PATH, q="is:starred", flagged="false"),
)  # fmt: skip

PLAIN: tuple[Call, ...] = (
    MESSAGE_LISTS + THREAD_LISTS + MESSAGE_READS + ACCOUNT_READS + _AUTH_ERRORS + _INPUT_ERRORS
)
"""Calls the search backend has no part in."""

BACKENDS = ("tantivy", "postgres")
