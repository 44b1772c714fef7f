# Cyrillic and CJK text is the point of this file: its look-alike letters are meant.
# ruff: noqa: RUF001
"""The search conformance mailbox and its cases: one table every search backend must pass.

The mailbox is data: each `MailRecord` is one message, small enough to read at a
glance, and `CASES` pairs a search with the keys of the messages it must return.
Every expected set follows from the record texts and the documented semantics
(docs/messages.md, "Search" and "Languages"; `mailsvc.search.query` for operator
edge cases), never from what an implementation happened to return; each case says
why in one line. Where the documentation and today's behaviour disagree, the case
follows the documentation and names the backend that differs in `known_differences`.

Reading the cases needs these facts of the documented semantics:

- Words match whole, case-insensitively, without stemming ("report" is not
  "reports", "письмо" is not "письма", "Vertrag" is not in "Arbeitsvertrag");
  text is "split on non-letters", so a hyphen or an address's "@" and "." separate
  words. `OR` joins words only in capitals (`mailsvc.search.query`).
- The document is the subject, every name and address of From, To, Cc, Bcc and
  Reply-To, and the text body. `from:` looks at From only; `to:` at To, Cc and Bcc.
- Dates are the server's receive time (INTERNALDATE) in UTC, never the Date header;
  `after:` is inclusive, `before:` exclusive.
- A search without `in:` or `label:` covers every mailbox, Trash and Junk included
  (docs/messages.md names no default scope, and `mailbox` has no default).
- CJK text is matched by character bigrams: a two-character word is found inside a
  sentence; a single character only where it stands alone.

Dates are fixed. The two relative cases (`older_than:5y`, `newer_than:5y`) hold
while "today" lies between 2020-12-31 and 2031-02-27: five years of 365 days back
from today must fall after the 2016 messages and no later than Feb 28, 2026.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

OWNER = "Dana Owner <dana@example.test>"
TEAM = "Team <team@acme.test>"
ALICE = "Alice Smith <alice@acme.test>"
BOB = "Bob Stone <bob@globex.test>"
CAROL = "Carol Diaz <carol@acme.test>"
HENRY = "Henry Ford <henry@globex.test>"
NEW_YORK_WINTER = timezone(timedelta(hours=-5))

PROBE_WORD = "zqxconformance"
"""Ends every body and appears in no case: a search for it finds the whole mailbox
once every message is searchable."""

MESSAGE_ID_DOMAIN = "conformance.test"
"""Each message's Message-ID is `<key@conformance.test>`, which maps API ids to keys."""


def _utc(
    year: int, month: int, day: int, hour: int = 9, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailRecord:
    """One message of the conformance mailbox."""

    key: str
    mailbox: str
    """The IMAP mailbox it is stored in: INBOX, Sent, Drafts, Trash, Junk, Archive, Projects."""
    received: datetime
    """INTERNALDATE, set by APPEND."""
    sender: str
    to: str
    subject: str
    body: str
    language: str
    cc: str = ""
    bcc: str = ""
    reply_to: str = ""
    unread: bool = False
    starred: bool = False
    attachment: bool = False
    date_header: datetime | None = None
    """The Date header when it differs from `received` (senders set it to anything)."""

    @property
    def message_id(self) -> str:
        return f"{self.key}@{MESSAGE_ID_DOMAIN}"


MAILBOX: tuple[MailRecord, ...] = (
    # English, INBOX, 2026.
    MailRecord(
        key="q3_report", mailbox="INBOX", received=_utc(2026, 10, 1), language="en",
        sender=ALICE, to=TEAM, subject="Quarterly report Q3",
        body="The quarterly report is attached. Revenue grew in every region.",
        attachment=True,
    ),
    MailRecord(
        key="report_draft", mailbox="INBOX", received=_utc(2026, 10, 2), language="en",
        sender=BOB, to=ALICE, subject="Draft numbers for the plan",
        body="A draft: the report numbers are not final. Quarterly figures follow next week.",
        unread=True,
    ),
    MailRecord(
        key="lunch", mailbox="INBOX", received=_utc(2026, 10, 3, 12), language="en",
        sender=CAROL, to=BOB, subject="Lunch on Friday", body="Pizza or sushi this Friday?",
    ),
    MailRecord(
        key="invoice", mailbox="INBOX", received=_utc(2026, 10, 5, 8), language="en",
        sender="Vendor Billing <billing@vendor.test>", to=ALICE, subject="Invoice 4711",
        reply_to="Accounts Desk <accounts@vendor.test>",
        body="Please find the invoice attached. Payment is due in 30 days.",
        unread=True, starred=True, attachment=True,
    ),
    MailRecord(
        key="receipt", mailbox="INBOX", received=_utc(2026, 10, 6, 18, 30), language="en",
        sender="Corner Shop <shop@store.test>", to=OWNER, subject="Your receipt",
        body="Thanks for your order. This receipt confirms the payment.",
    ),
    MailRecord(
        key="budget_words", mailbox="INBOX", received=_utc(2026, 10, 11), language="en",
        sender="Frank Ortiz <frank@globex.test>", to=OWNER, subject="Review notes",
        body="Review the numbers first, then the budget.",  # both words, not the phrase
        unread=True,
    ),
    MailRecord(
        key="cc_alice", mailbox="INBOX", received=_utc(2026, 10, 12, 14), language="en",
        sender="Grace Hopper <grace@navy.test>", to=TEAM, cc=ALICE, subject="Compiler meeting",
        body="Let us meet about the new compiler.",
    ),
    MailRecord(
        key="status_report", mailbox="INBOX", received=_utc(2026, 10, 19, 3), language="en",
        sender="Ops Bot <ops@acme.test>", to=TEAM, subject="Nightly status",
        body="STATUS REPORT: all systems green.",
    ),
    # Dates: two old messages, and three around the first of March 2026.
    MailRecord(
        key="holiday_2015", mailbox="INBOX", received=_utc(2015, 6, 1, 7), language="en",
        sender=ALICE, to=OWNER, subject="Holiday photos", body="Photos from the beach trip.",
        attachment=True,
    ),
    MailRecord(
        key="new_year_2016", mailbox="INBOX", received=_utc(2016, 1, 1, 0, 30), language="en",
        sender=BOB, to=OWNER, subject="Happy new year", body="Best wishes for the new year.",
    ),
    MailRecord(
        key="late_february", mailbox="INBOX", received=_utc(2026, 2, 28, 23, 59, 59),
        language="en", sender=HENRY, to=OWNER, subject="Late February",
        body="Sent a second before March began.",
    ),
    MailRecord(
        key="minutes_march", mailbox="INBOX", received=_utc(2026, 3, 1, 10), language="en",
        sender=HENRY, to=OWNER, subject="Meeting minutes", body="Minutes of the March meeting.",
        date_header=_utc(2031, 1, 1),  # a sender's clock far off: searches ignore it
    ),
    MailRecord(
        key="march_midnight", mailbox="INBOX", received=_utc(2026, 3, 2, 0), language="en",
        sender=HENRY, to=OWNER, subject="Midnight check", body="Received exactly at midnight.",
    ),
    MailRecord(
        # 23:30 on Mar 1 in New York is 04:30 on Mar 2 in UTC, the day searches use.
        key="eastern_evening", mailbox="INBOX",
        received=datetime(2026, 3, 1, 23, 30, tzinfo=NEW_YORK_WINTER), language="en",
        sender=HENRY, to=OWNER, subject="Evening call", body="Call from the east coast.",
    ),
    # Russian: one form of "letter" each.
    MailRecord(
        key="ru_letter", mailbox="INBOX", received=_utc(2026, 10, 13), language="ru",
        sender="Иван Петров <ivan@example.ru>", to=OWNER, subject="Письмо о проекте",
        body="Отправляю письмо с планом. Проект стартует в понедельник.",
        unread=True,
    ),
    MailRecord(
        key="ru_letters", mailbox="INBOX", received=_utc(2026, 10, 14), language="ru",
        sender="Мария Соколова <maria@example.ru>", to=OWNER, subject="Два письма",
        body="Я получила письма от клиентов.",
    ),
    # German: a compound, the simple word, umlauts.
    MailRecord(
        key="de_contract", mailbox="INBOX", received=_utc(2026, 10, 15), language="de",
        sender="Personalabteilung <hr@firma.de>", to=OWNER, subject="Ihr Arbeitsvertrag",
        body="Anbei der Arbeitsvertrag zur Unterschrift. Freundliche Grüße",
        attachment=True,
    ),
    MailRecord(
        key="de_vertrag", mailbox="INBOX", received=_utc(2026, 10, 16), language="de",
        sender="Jürgen Müller <juergen@beispiel.de>", to=OWNER, subject="Vertrag verlängert",
        body="Der Vertrag wurde verlängert. Schöne Grüße aus München",
        unread=True,
    ),
    # Chinese: "会议" (meeting) inside a sentence; the other has 会 and 议, never adjacent.
    MailRecord(
        key="zh_meeting", mailbox="INBOX", received=_utc(2026, 10, 17), language="zh",
        sender="王伟 <wang@example.cn>", to=OWNER, subject="会议通知",
        body="明天下午的会议取消了，请通知大家。",
    ),
    MailRecord(
        key="zh_weekend", mailbox="INBOX", received=_utc(2026, 10, 18), language="zh",
        sender="李娜 <li@example.cn>", to=OWNER, subject="周末计划",
        body="我们周末去公园，会后再议。",
    ),
    # Japanese and Korean: a word inside a longer run of characters.
    MailRecord(
        key="ja_meeting", mailbox="INBOX", received=_utc(2026, 10, 20), language="ja",
        sender="田中 <tanaka@example.jp>", to=OWNER, subject="明日の予定",
        body="明日の会議は中止です。",
    ),
    MailRecord(
        key="ko_meeting", mailbox="INBOX", received=_utc(2026, 10, 21), language="ko",
        sender="김민수 <minsu@example.kr>", to=OWNER, subject="일정 변경",
        body="내일 회의가 취소되었습니다.",
    ),
    # The other mailboxes: one message each.
    MailRecord(
        key="sent_reply", mailbox="Sent", received=_utc(2026, 10, 8), language="en",
        sender=OWNER, to=BOB, cc=CAROL, bcc=HENRY, subject="Re: Draft numbers for the plan",
        body="Thanks Bob, the budget review is on Monday.",
    ),
    MailRecord(
        key="invoice_draft", mailbox="Drafts", received=_utc(2026, 10, 7), language="en",
        sender=OWNER, to=BOB, subject="Invoice for Globex", body="This invoice is still a draft.",
    ),
    MailRecord(
        key="trash_newsletter", mailbox="Trash", received=_utc(2026, 10, 4), language="en",
        sender="Weekly Newsletter <news@newsletter.test>", to=OWNER, subject="Weekly newsletter",
        body="Pizza coupons and budget tips inside.",
    ),
    MailRecord(
        key="junk_prize", mailbox="Junk", received=_utc(2026, 10, 9), language="en",
        sender="Prize Office <winner@lottery.test>", to=OWNER, subject="You won",
        body="Claim your invoice refund now!", unread=True,
    ),
    MailRecord(
        key="reports_archive", mailbox="Archive", received=_utc(2026, 9, 15), language="en",
        sender=CAROL, to=TEAM, subject="Old reports", body="All weekly reports are archived here.",
    ),
    MailRecord(
        key="kickoff", mailbox="Projects", received=_utc(2026, 10, 10), language="en",
        sender="Erik Berg <erik@acme.test>", to=TEAM, subject="Project kickoff",
        body="The budget review starts the kickoff.", starred=True,
    ),
)  # fmt: skip

CUSTOM_MAILBOXES = ("Projects",)
"""Mailboxes the server does not create by itself (no special use): `label:` targets."""


@dataclass(frozen=True, slots=True)
class Case:
    """A search and the keys of exactly the messages it must return."""

    query: str
    expected: frozenset[str]
    why: str
    known_differences: dict[str, str] = field(default_factory=dict)
    """Backend -> how it disagrees with the documentation (the case xfails there)."""


def _case(query: str, expected: set[str], why: str, **known_differences: str) -> Case:
    return Case(query, frozenset(expected), why, known_differences)


CASES: tuple[Case, ...] = (
    # Words, no stemming, any case.
    _case("report", {"q3_report", "report_draft", "status_report"},
          "the whole word in any case; reports_archive has only 'reports'"),
    _case("reports", {"reports_archive"}, "no stemming: 'reports' is its own word"),
    _case("quarter", set(), "whole words only: 'quarterly' does not contain a match"),
    _case("4711", {"invoice"}, "a number is a word too"),
    _case("report OR reports", {"q3_report", "report_draft", "status_report", "reports_archive"},
          "the documented way to find both forms"),
    _case("quarterly report", {"q3_report", "report_draft"},
          "both words anywhere: report_draft has them apart and in the other order"),
    _case("stone", {"report_draft", "lunch", "new_year_2016", "sent_reply", "invoice_draft"},
          "names of From, To and Cc are in the document: Bob Stone sent or received these"),
    _case("desk", {"invoice"}, "Reply-To names are in the document too"),
    _case("alice@acme.test", {"q3_report", "report_draft", "invoice", "cc_alice", "holiday_2015"},
          "a whole address as free text: her address in From, To or Cc"),
    _case("navy", {"cc_alice"},
          "a word of the address grace@navy.test; no name or text says 'navy'"),
    _case("east-coast", {"eastern_evening"},
          "split at the hyphen: 'east' then 'coast', as in 'east coast'"),
    # Phrases.
    _case('"quarterly report"', {"q3_report"}, "only q3_report has the words adjacent, in order"),
    _case('"budget review"', {"sent_reply", "kickoff"},
          "budget_words has both words, not the phrase"),
    _case("budget review", {"sent_reply", "kickoff", "budget_words"},
          "both words; trash_newsletter has 'budget' but not 'review'"),
    # Negation and OR.
    _case("invoice -draft", {"invoice", "junk_prize"},
          "invoice_draft says 'draft'; the spam in Junk counts, no mailbox is excluded"),
    _case('"budget review" -monday', {"kickoff"}, "sent_reply has the phrase and 'Monday'"),
    _case("invoice OR receipt", {"invoice", "receipt", "invoice_draft", "junk_prize"},
          "either word, in any mailbox"),
    _case("ПОНЕДЕЛЬНИК OR vertrag", {"ru_letter", "de_vertrag"}, "OR across scripts"),
    _case("pizza or sushi", {"lunch"},
          "lower-case 'or' is a word: lunch has all three, trash_newsletter only pizza"),
    # from: and to:, by name, whole address and address part.
    _case("from:alice", {"q3_report", "holiday_2015"}, "a word of Alice Smith's address"),
    _case("from:Smith", {"q3_report", "holiday_2015"},
          "a word of the From name; cc_alice has her in Cc only"),
    _case('from:"Alice Smith"', {"q3_report", "holiday_2015"}, "the quoted full name"),
    _case("from:alice@acme.test", {"q3_report", "holiday_2015"}, "the whole address"),
    _case("from:acme.test",
          {"q3_report", "lunch", "holiday_2015", "reports_archive", "kickoff", "status_report"},
          "the domain: Alice, Carol, Erik and the ops bot write from acme.test"),
    _case("from:ali", set(),
          "'ali' is no word of any name or address (docs: 'a word of a name or address')"),
    _case("to:alice", {"report_draft", "invoice", "cc_alice"},
          "To or Cc: cc_alice has her in Cc; her own mail is From, not To"),
    _case("to:henry", {"sent_reply"}, "Bcc counts; Henry's own messages have him in From"),
    _case("from:dana", {"sent_reply", "invoice_draft"}, "the owner's sent message and draft"),
    _case("to:globex.test", {"lunch", "sent_reply", "invoice_draft"},
          "Bob at globex.test is the To of these three"),
    _case("-from:acme.test report", {"report_draft"},
          "q3_report and status_report come from acme.test"),
    # subject:
    _case("subject:report", {"q3_report"},
          "report_draft and status_report have it in the body only"),
    _case('subject:"quarterly report"', {"q3_report"}, "the phrase in the subject"),
    _case("SUBJECT:Report", {"q3_report"}, "operator names and words in any case"),
    _case("subject:invoice", {"invoice", "invoice_draft"}, "junk_prize has it in the body only"),
    _case("-subject:report report", {"report_draft", "status_report"},
          "the word, but not in the subject"),
    # has: and is:
    _case("has:attachment", {"q3_report", "invoice", "holiday_2015", "de_contract"},
          "the four messages with a file attached"),
    _case("is:unread",
          {"report_draft", "invoice", "budget_words", "ru_letter", "de_vertrag", "junk_prize"},
          "the six messages without \\Seen, Junk included"),
    _case("is:unread in:inbox",
          {"report_draft", "invoice", "budget_words", "ru_letter", "de_vertrag"},
          "the unread ones without junk_prize"),
    _case("-has:attachment quarterly", {"report_draft"}, "q3_report has the word and a file"),
    _case("is:starred", {"invoice", "kickoff"}, "the two \\Flagged messages"),
    _case("is:starred is:read", {"kickoff"}, "invoice is starred but unread"),
    _case("is:read has:attachment", {"q3_report", "holiday_2015", "de_contract"},
          "invoice is the unread one with an attachment"),
    # Dates: INTERNALDATE in UTC; after: inclusive, before: exclusive.
    _case("before:2026/03/01", {"holiday_2015", "new_year_2016", "late_february"},
          "late_february arrived at 23:59:59 on Feb 28"),
    _case("after:2026/03/01 before:2026/03/02", {"minutes_march"},
          "Mar 1 UTC (its Date header says 2031); eastern_evening is Mar 2 in UTC"),
    _case("after:2026-03-02 before:2026-09-16",
          {"march_midnight", "eastern_evening", "reports_archive"},
          "00:00 and 04:30 UTC of Mar 2 are included; reports_archive is Sep 15"),
    _case("after:2031/01/01", set(), "no message was received in 2031; Date headers do not count"),
    _case("older_than:5y", {"holiday_2015", "new_year_2016"},
          "only the 2015 and 2016 messages are more than five years old"),
    _case("newer_than:5y from:bob", {"report_draft"}, "Bob's 2016 message is too old"),
    # in: and label:
    _case("in:sent", {"sent_reply"}, "the Sent mailbox"),
    _case("in:drafts", {"invoice_draft"}, "the Drafts mailbox"),
    _case("in:trash", {"trash_newsletter"}, "the Trash mailbox"),
    _case("in:spam", {"junk_prize"}, "spam is the Junk mailbox"),
    _case("in:archive", {"reports_archive"}, "the Archive mailbox"),
    _case("label:Projects", {"kickoff"}, "a mailbox by name"),
    _case("pizza", {"lunch", "trash_newsletter"}, "no in: means every mailbox, Trash included"),
    _case("in:inbox pizza", {"lunch"}, "trash_newsletter is in Trash"),
    _case("in:anywhere pizza", {"lunch", "trash_newsletter"}, "every mailbox"),
    _case("label:Projects budget", {"kickoff"}, "three other messages say 'budget'"),
    # Russian: whole words, no stemming, any case.
    _case("письмо", {"ru_letter"}, "ru_letters has only the plural 'письма'"),
    _case("письма", {"ru_letters"}, "ru_letter has only the singular 'письмо'"),
    _case("письмо OR письма", {"ru_letter", "ru_letters"}, "both forms"),
    _case("ПОНЕДЕЛЬНИК", {"ru_letter"}, "case-insensitive: the body says 'понедельник'"),
    _case("проект", {"ru_letter"}, "the body's 'Проект'; the subject's 'проекте' is another word"),
    _case("from:иван", {"ru_letter"}, "a Cyrillic word of the From name"),
    # German: compounds are single words; umlauts as typed.
    _case("vertrag", {"de_vertrag"}, "'Arbeitsvertrag' is one word and does not match"),
    _case("arbeitsvertrag", {"de_contract"}, "the compound itself"),
    _case("grüße", {"de_contract", "de_vertrag"}, "an umlaut and ß, as typed"),
    _case("VERLÄNGERT", {"de_vertrag"}, "case-insensitive with an umlaut"),
    _case("münchen", {"de_vertrag"}, "a body word with an umlaut"),
    _case("from:müller", {"de_vertrag"}, "an umlaut in the From name"),
    # Chinese: bigrams.
    _case("会议", {"zh_meeting"}, "a two-character word inside a sentence and the subject"),
    _case("取消", {"zh_meeting"}, "a word in the middle of the body's sentence"),
    _case("周末", {"zh_weekend"}, "zh_meeting has no 周末"),
    _case("会", set(), "a single character matches only where it stands alone; nowhere here"),
    _case("subject:通知", {"zh_meeting"}, "the subject 会议通知 ends in 通知"),
    _case("会議", {"ja_meeting"}, "Japanese: the kanji word between hiragana"),
    _case("회의", {"ko_meeting"}, "Korean: the word with its particle, 회의가"),
    _case("-会议 from:example.cn", {"zh_weekend"}, "the Chinese sender without the meeting"),
    # Several operators at once.
    _case("from:acme.test is:read after:2026/01/01 in:inbox -pizza", {"q3_report", "status_report"},
          "lunch says pizza, holiday_2015 is old, reports_archive and kickoff are elsewhere"),
    _case("quarterly OR nightly has:attachment -from:bob", {"q3_report"},
          "report_draft and status_report match the words but have no attachment"),
)  # fmt: skip
