"""Gmail-style search strings, parsed into a `SearchQuery` (`GET /api/messages?q=`).

Pure: no SQL, no I/O. The message service turns a `SearchQuery` into a
`search.filter.MessageFilter`, and the search backend (`search/backend.py`) matches
its `text` against each message's document (subject, names and addresses, body)
and its other fields against the message's columns. Every term of a search must
hold (they are ANDed).

Terms are separated by whitespace; double quotes keep words together as one term
(`"quarterly report"`, `from:"Alice Smith"`), and a quote left open runs to the end.

Free text, kept in `text` in websearch syntax (everything that is not an operator):

    budget report         both words
    "quarterly report"    the words next to each other, in this order (a phrase)
    budget OR forecast    either word; `OR` in capitals. It joins free text only:
                          `from:a OR from:b` is an error, not a search for both
    -draft  -"old plan"   messages without the word or the phrase

Operators. Names are case-insensitive (`FROM:`, `Subject:`); a `word:value` term
whose word is not one of them (`http://example.com`, `12:30`, `foo:bar`) is free
text. A `-` in front negates an operator where the table says so; otherwise, and
for an empty value (`from:` alone) or a value the operator does not take, the
search is refused with `QuerySyntaxError`, whose `field` names the operator.

    from:alice  from:alice@example.com  from:"Alice Smith"
                          a From name or address matches the value   -> from_
                          -from:x: no From matches it                -> excluded_from
    to:bob                a To, Cc or Bcc name or address matches it, as in Gmail,
                          where to: also finds the messages you were copied on
                          -> to;  -to:x -> excluded_to
    subject:budget  subject:"q3 report"
                          the subject has the word or the phrase     -> subject
                          -subject:x: it does not                    -> excluded_subject
    has:attachment        -> has_attachment=True; -has:attachment -> False
                          (`has:attachments` is accepted too)
    is:unread  is:read    -> unread=True / False; negated: the opposite
    is:starred  is:flagged
                          -> flagged=True; -is:starred -> False
    before:2024/01/31     dated before that day (exclusive)          -> before
    after:2024/01/01      dated that day or later (inclusive)        -> after
                          Dates are YYYY/MM/DD, YYYY-MM-DD or YYYY/M/D. `older:`
                          and `newer:` are Gmail's aliases of before: and after:.
                          -before:D is after:D and -after:D is before:D.
    older_than:2m  newer_than:7d
                          relative to today (UTC): d days, m months of 30 days,
                          y years of 365 days; older_than:N is before:(today - N),
                          newer_than:N is after:(today - N); negated: swapped
    in:inbox  in:sent  in:drafts  in:trash  in:spam  in:archive
                          the mailbox with that role -> mailbox_role (`inbox`,
                          `sent`, `drafts`, `trash`, `junk`, `archive`: the names of
                          `models.mailbox.MAILBOX_ROLES`; spam is `junk`)
    in:anywhere           every mailbox, Trash and Junk included -> anywhere=True
    label:Work  label:"Clients/Acme"
                          the mailbox of that name (full path, as typed) -> mailbox

On Gmail (mailsvc.sync.plan) a folder is a label: `in:inbox` and `label:Work` name
the label folders INBOX and Work, whose messages are All Mail's rows carrying the
labels `\\Inbox` and `Work`; the message service resolves the names, this parser does
not know which server a mailbox is on.

A search names at most one mailbox: `in:inbox label:Work` is refused, because a
stored message is in exactly one mailbox. Two terms that contradict each other on a
yes/no field (`is:read is:unread`) are refused too; repeated dates narrow the range.
`in:` and `label:` cannot be negated. Searches are limited to 1,000 characters and
50 terms, and may not contain NUL characters (PostgreSQL text cannot hold them).

Languages. Words are split and case-folded by `search.words`, the one splitter both
search backends use for documents and searches alike: words of languages written
with spaces (English, German, Russian, Greek, Arabic, ...) match as typed, in any
case, with no stemming. Chinese, Japanese and Korean are written without spaces,
so both sides use overlapping character pairs: a run of CJK characters (the ranges
of `CJK_CHARACTER_CLASS`) is its bigrams ("中文字" -> "中文 文字"; a lone character
stays itself). Here a free-text term or a subject value with CJK characters becomes
the quoted phrase of its bigrams (`中文字` -> `"中文 文字"`, `-中文字` ->
`-"中文 文字"`), so the pairs must appear next to each other, in order, and a CJK run
is split from letters or digits written against it (`Python编程` -> `"Python 编程"`).
`search.words` would make the same pairs of the term as typed; the rewrite keeps
`text` readable as the phrases a backend matches.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

MAX_QUERY_CHARS = 1_000
MAX_TERMS = 50

CJK_CHARACTER_CLASS = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]"
"""Hiragana and Katakana, CJK Unified Ideographs and Extension A, Hangul syllables.

Written with `\\uXXXX` escapes; `search.words` splits documents and searches with
this very class.
"""

_CJK_RUN = re.compile(CJK_CHARACTER_CLASS + "+")
# A term: characters up to whitespace, where a quoted part may hold whitespace too.
# Linear: the two alternatives cannot both start at the same character.
_TERM = re.compile(r'(?:"[^"]*(?:"|\Z)|[^\s"])+')
_OPERATOR = re.compile(r"(-?)([a-z_]+):(.*)", re.IGNORECASE | re.DOTALL)
_WHITESPACE = re.compile(r"\s+")
_DATE = re.compile(r"(\d{4})([/-])(\d{1,2})\2(\d{1,2})")
_AGE = re.compile(r"(\d{1,6})([dmy])", re.IGNORECASE)
_DAYS_PER_UNIT = {"d": 1, "m": 30, "y": 365}

# `in:` values -> mailbox roles (the values of models.mailbox.MAILBOX_ROLES; not
# imported from there, which would bring SQLAlchemy into this pure module).
_ROLES = {
    "inbox": "inbox",
    "sent": "sent",
    "draft": "drafts",
    "drafts": "drafts",
    "trash": "trash",
    "bin": "trash",
    "spam": "junk",
    "junk": "junk",
    "archive": "archive",
}
_ANYWHERE = "anywhere"


class QuerySyntaxError(ValueError):
    """A search the user must fix; `field` names the operator at fault (e.g. "before").

    `field` is "q" when the fault is the search as a whole (too long, too many terms).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed search; the module docstring gives the operator behind each field.

    `text` and the `subject` phrases are in websearch syntax (words, "phrases", OR,
    -exclusions; `search.words.parse_free_text` reads it); address and mailbox values
    are as typed (quotes removed, whitespace collapsed).
    """

    text: str
    """Free text: words, "quoted phrases", OR and -exclusions; "" if none."""
    from_: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    """Matched against To, Cc and Bcc."""
    subject: tuple[str, ...] = ()
    """Each one double-quoted phrase (`"q3 report"`, `"budget"`) with CJK bigrams."""
    excluded_from: tuple[str, ...] = ()
    excluded_to: tuple[str, ...] = ()
    excluded_subject: tuple[str, ...] = ()
    has_attachment: bool | None = None
    unread: bool | None = None
    flagged: bool | None = None
    before: date | None = None
    """Exclusive: the message date is earlier than this day."""
    after: date | None = None
    """Inclusive: the message date is this day or later."""
    mailbox_role: str | None = None
    """A role of `MAILBOX_ROLES` (`in:spam` is `junk`)."""
    mailbox: str | None = None
    """A mailbox name (`label:`), as typed."""
    anywhere: bool = False
    """`in:anywhere`: Trash and Junk included, should the search leave them out otherwise."""


def cjk_bigrams(text: str) -> str:
    """`text` with every run of CJK characters replaced by its overlapping bigrams.

    The bigrams of a run are separated by spaces ("中文字" -> "中文 文字"), a run of
    one character stays itself, and a space is put between a run and a letter or
    digit written against it ("Python编程" -> "Python 编程"). Everything else is
    unchanged.
    """
    return _CJK_RUN.sub(_bigrams_of_run, text)


def parse_query(q: str, *, today: date | None = None) -> SearchQuery:
    """Parse a Gmail-style search (see the module docstring for the syntax).

    `today` anchors `older_than:` and `newer_than:`; it defaults to the UTC date.
    Raises `QuerySyntaxError` for a search the user must correct.
    """
    if len(q) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"a search is at most {MAX_QUERY_CHARS:,} characters", field="q")
    if "\x00" in q:
        raise QuerySyntaxError("a search cannot contain NUL characters", field="q")
    terms = _TERM.findall(q)
    if len(terms) > MAX_TERMS:
        raise QuerySyntaxError(f"a search has at most {MAX_TERMS} terms", field="q")

    items = [_operator_of(term) or term for term in terms]
    _refuse_or_next_to_operators(items)
    draft = _Draft(today=datetime.now(UTC).date() if today is None else today)
    words: list[str] = []
    for item in items:
        if isinstance(item, _Operator):
            _HANDLERS[item.name](draft, item)
        else:
            words.append(_free_text(item))
    return draft.freeze(text=" ".join(words))


@dataclass(frozen=True, slots=True)
class _Operator:
    name: str
    """As typed, lower-cased (`older`, not `before`): what errors name."""
    value: str
    """Quotes removed, whitespace collapsed; never empty."""
    negated: bool

    def refuse(self, expectation: str) -> QuerySyntaxError:
        return QuerySyntaxError(f"{self.name}: {expectation}", field=self.name)


@dataclass(slots=True)
class _Draft:
    """What the operators have said so far; `freeze` makes it a `SearchQuery`."""

    today: date
    from_: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    excluded_from: list[str] = field(default_factory=list)
    excluded_to: list[str] = field(default_factory=list)
    excluded_subject: list[str] = field(default_factory=list)
    has_attachment: bool | None = None
    unread: bool | None = None
    flagged: bool | None = None
    before: date | None = None
    after: date | None = None
    # ("role", "inbox"), ("name", "Work") or ("anywhere", ""): one slot, so that a
    # second, different mailbox can be refused.
    scope: tuple[str, str] | None = None

    def bound(self, day: date, *, upper: bool) -> None:
        """Narrow the date range: every bound must hold, so the tightest one wins."""
        if upper:
            self.before = day if self.before is None else min(self.before, day)
        else:
            self.after = day if self.after is None else max(self.after, day)

    def set_scope(self, scope: tuple[str, str], operator: _Operator) -> None:
        if self.scope is not None and self.scope != scope:
            raise operator.refuse("a search can name only one mailbox (in: or label:)")
        self.scope = scope

    def freeze(self, *, text: str) -> SearchQuery:
        kind, value = self.scope or ("", "")
        return SearchQuery(
            text=text,
            from_=tuple(self.from_),
            to=tuple(self.to),
            subject=tuple(self.subject),
            excluded_from=tuple(self.excluded_from),
            excluded_to=tuple(self.excluded_to),
            excluded_subject=tuple(self.excluded_subject),
            has_attachment=self.has_attachment,
            unread=self.unread,
            flagged=self.flagged,
            before=self.before,
            after=self.after,
            mailbox_role=value if kind == "role" else None,
            mailbox=value if kind == "name" else None,
            anywhere=kind == _ANYWHERE,
        )


def _operator_of(term: str) -> _Operator | None:
    """The operator a term is, or None for free text (unknown names included)."""
    match = _OPERATOR.fullmatch(term)
    if match is None:
        return None
    sign, name, raw_value = match.groups()
    name = name.lower()
    if name not in _HANDLERS:
        return None
    value = _WHITESPACE.sub(" ", raw_value.replace('"', " ")).strip()
    if not value:
        raise QuerySyntaxError(f"{name}: needs a value", field=name)
    return _Operator(name=name, value=value, negated=sign == "-")


def _refuse_or_next_to_operators(items: list[_Operator | str]) -> None:
    # The operators are ANDed whatever stands between them, and the free-text parser
    # reads an OR with nothing to join as the word "or": `from:a OR from:b` would
    # quietly ask for mail from both a and b that contains "or".
    for index, item in enumerate(items):
        if item != "OR":
            continue
        neighbours = items[max(index - 1, 0) : index] + items[index + 1 : index + 2]
        for neighbour in neighbours:
            if isinstance(neighbour, _Operator):
                raise QuerySyntaxError(
                    f"OR joins words, not operators like {neighbour.name}:",
                    field=neighbour.name,
                )


def _free_text(term: str) -> str:
    """A free-text term in websearch syntax; CJK text becomes a phrase of bigrams."""
    if _CJK_RUN.search(term) is None:
        return term
    sign = "-" if term.startswith("-") else ""
    return sign + _phrase(term.removeprefix("-"))


def _phrase(words: str) -> str:
    """`words` as one websearch phrase: CJK bigrams, inside double quotes."""
    collapsed = _WHITESPACE.sub(" ", words.replace('"', " ")).strip()
    return f'"{cjk_bigrams(collapsed)}"'


def _bigrams_of_run(match: re.Match[str]) -> str:
    run = match.group()
    bigrams = " ".join(run[i : i + 2] for i in range(len(run) - 1)) or run
    text, start, end = match.string, match.start(), match.end()
    before = " " if start > 0 and _is_word_character(text[start - 1]) else ""
    after = " " if end < len(text) and _is_word_character(text[end]) else ""
    return before + bigrams + after


def _is_word_character(character: str) -> bool:
    # Letters, combining marks and digits: what PostgreSQL's parser would glue to
    # the CJK run as one token. Punctuation and spaces already separate it.
    return unicodedata.category(character)[0] in "LMN"


def _date(operator: _Operator) -> date:
    match = _DATE.fullmatch(operator.value)
    if match is not None:
        year, _, month, day = match.groups()
        # Well-formed but no such day (2024/02/30) is the same mistake to the user.
        with contextlib.suppress(ValueError):
            return date(int(year), int(month), int(day))
    raise operator.refuse("expects a date like 2024/01/31")


def _days_ago(operator: _Operator, today: date) -> date:
    match = _AGE.fullmatch(operator.value)
    if match is None:
        raise operator.refuse("expects an age like 7d, 2m or 1y")
    days = int(match.group(1)) * _DAYS_PER_UNIT[match.group(2).lower()]
    # Ages beyond year 1 mean "since forever", not an OverflowError.
    return today - timedelta(days=min(days, (today - date.min).days))


def _flag(current: bool | None, wanted: bool, operator: _Operator) -> bool:
    if current is not None and current != wanted:
        sign = "-" if operator.negated else ""
        raise QuerySyntaxError(
            f"{sign}{operator.name}:{operator.value} contradicts another term of the search",
            field=operator.name,
        )
    return wanted


def _from(draft: _Draft, operator: _Operator) -> None:
    (draft.excluded_from if operator.negated else draft.from_).append(operator.value)


def _to(draft: _Draft, operator: _Operator) -> None:
    (draft.excluded_to if operator.negated else draft.to).append(operator.value)


def _subject(draft: _Draft, operator: _Operator) -> None:
    target = draft.excluded_subject if operator.negated else draft.subject
    target.append(_phrase(operator.value))


def _has(draft: _Draft, operator: _Operator) -> None:
    if operator.value.lower() not in {"attachment", "attachments"}:
        raise operator.refuse("expects attachment")
    draft.has_attachment = _flag(draft.has_attachment, not operator.negated, operator)


def _is(draft: _Draft, operator: _Operator) -> None:
    match operator.value.lower():
        case "unread":
            draft.unread = _flag(draft.unread, not operator.negated, operator)
        case "read":
            draft.unread = _flag(draft.unread, operator.negated, operator)
        case "starred" | "flagged":
            draft.flagged = _flag(draft.flagged, not operator.negated, operator)
        case _:
            raise operator.refuse("expects unread, read, starred or flagged")


# A negated bound is the other bound, exactly: not before D (exclusive) is D or later,
# which is after:D (inclusive).
def _before(draft: _Draft, operator: _Operator) -> None:
    draft.bound(_date(operator), upper=not operator.negated)


def _after(draft: _Draft, operator: _Operator) -> None:
    draft.bound(_date(operator), upper=operator.negated)


def _older_than(draft: _Draft, operator: _Operator) -> None:
    draft.bound(_days_ago(operator, draft.today), upper=not operator.negated)


def _newer_than(draft: _Draft, operator: _Operator) -> None:
    draft.bound(_days_ago(operator, draft.today), upper=operator.negated)


def _in(draft: _Draft, operator: _Operator) -> None:
    if operator.negated:
        raise operator.refuse("cannot be negated")
    value = operator.value.lower()
    if value == _ANYWHERE:
        draft.set_scope((_ANYWHERE, ""), operator)
        return
    role = _ROLES.get(value)
    if role is None:
        raise operator.refuse(
            "expects inbox, sent, drafts, trash, spam, archive or anywhere; "
            "label: names any other mailbox"
        )
    draft.set_scope(("role", role), operator)


def _label(draft: _Draft, operator: _Operator) -> None:
    if operator.negated:
        raise operator.refuse("cannot be negated")
    draft.set_scope(("name", operator.value), operator)


_HANDLERS: dict[str, Callable[[_Draft, _Operator], None]] = {
    "from": _from,
    "to": _to,
    "subject": _subject,
    "has": _has,
    "is": _is,
    "before": _before,
    "older": _before,
    "after": _after,
    "newer": _after,
    "older_than": _older_than,
    "newer_than": _newer_than,
    "in": _in,
    "label": _label,
}
