"""`MessageFilter` -> one Tantivy query. Pure apart from building Tantivy objects.

User text never reaches Tantivy's query-string parser: the free text is read by
`search.words.parse_free_text` (websearch syntax, the same reading as the PostgreSQL
backend) and every word comes from `search.words`, so the terms asked for are
exactly the terms indexed (schema.py).

    free text       every clause Must; a clause of several terms (`a OR b`) is a
                    BooleanQuery of Shoulds; a term is a TermQuery on `text`, or a
                    PhraseQuery for a "phrase" or a word that splits
                    (`alice@acme.test`); `-term` is MustNot
    from:/to:/subject:   the value's words as a term or phrase of `from`/`to`/`subject`
    not_*           MustNot of the same
    plain filters   Must, wrapped in a zero constant score so they do not move the
                    ranking: raw terms, booleans, a range of `received`

Relevance is BM25 over `text`, plus the free-text terms found in the subject (Should
clauses: they add to the score and never decide a match). Text that holds no word at
all (`!!!`) and a `from:`/`to:`/`subject:` value without one match nothing, as in
the PostgreSQL backend.
"""

from __future__ import annotations

from datetime import datetime

import tantivy
from tantivy import Occur, Query

from mailsvc.search.filter import MessageFilter, labels_by_accounts
from mailsvc.search.tantivy import schema
from mailsvc.search.words import FreeText, Term, parse_free_text, words

_Clause = tuple[Occur, Query]


def compile_filter(filters: MessageFilter) -> Query:
    """The Tantivy query that matches exactly the documents `filters` asks for."""
    scoring: list[_Clause] = []
    if filters.text:
        free_text = parse_free_text(filters.text)
        if not free_text.clauses:
            return Query.empty_query()
        scoring += _free_text(free_text)
    for field, values, wanted in (
        (schema.FROM, filters.from_, True),
        (schema.TO, filters.to, True),
        (schema.SUBJECT, filters.subject, True),
        (schema.FROM, filters.not_from, False),
        (schema.TO, filters.not_to, False),
        (schema.SUBJECT, filters.not_subject, False),
    ):
        for value in values:
            term = Term(tuple(words(value)))
            if wanted:
                # No word to look for: nothing can match it.
                query = _term(field, term) if term.words else Query.empty_query()
                scoring.append((Occur.Must, query))
            elif term.words:
                scoring.append((Occur.MustNot, _term(field, term)))

    clauses = scoring
    plain = _plain_filters(filters)
    if plain:
        clauses.append((Occur.Must, Query.const_score_query(Query.boolean_query(plain), 0.0)))
    if not any(occur == Occur.Must for occur, _ in clauses):
        # Only exclusions (or nothing): a BooleanQuery needs something to match first.
        clauses.append((Occur.Must, Query.all_query()))
    return Query.boolean_query(clauses)


def _free_text(free_text: FreeText) -> list[_Clause]:
    clauses: list[_Clause] = []
    for alternatives in free_text.clauses:
        if len(alternatives) == 1:
            (term,) = alternatives
            occur = Occur.MustNot if term.negated else Occur.Must
            clauses.append((occur, _term(schema.TEXT, term)))
        else:
            either = [(Occur.Should, _alternative(term)) for term in alternatives]
            clauses.append((Occur.Must, Query.boolean_query(either)))
        # The subject weighs more, as in the PostgreSQL backend (weight A).
        clauses += [
            (Occur.Should, _term(schema.SUBJECT, term)) for term in alternatives if not term.negated
        ]
    return clauses


def _alternative(term: Term) -> Query:
    """One side of an OR: the term, or (for `-term`) every document without it."""
    query = _term(schema.TEXT, term)
    if not term.negated:
        return query
    return Query.boolean_query([(Occur.Must, Query.all_query()), (Occur.MustNot, query)])


def _term(field: str, term: Term) -> Query:
    """The term's words in `field`: one word, or all of them next to each other."""
    if len(term.words) == 1:
        return Query.term_query(schema.SCHEMA, field, term.words[0], index_option="freq")
    return Query.phrase_query(schema.SCHEMA, field, list(term.words))


def _plain_filters(filters: MessageFilter) -> list[_Clause]:
    clauses: list[_Clause] = []

    def must(query: Query) -> None:
        clauses.append((Occur.Must, query))

    def raw(field: str, value: object) -> Query:
        return Query.term_query(schema.SCHEMA, field, str(value), index_option="basic")

    if filters.account_id is not None:
        must(raw(schema.ACCOUNT, filters.account_id))
    if filters.mailbox_ids is not None:
        must(_mailboxes(filters))
    for label in filters.labels:
        must(raw(schema.LABEL, label))
    if filters.thread_id is not None:
        must(raw(schema.THREAD, filters.thread_id))
    for field, value in (
        (schema.SEEN, None if filters.unread is None else not filters.unread),
        (schema.FLAGGED, filters.flagged),
        (schema.HAS_ATTACHMENTS, filters.has_attachments),
    ):
        if value is not None:
            must(Query.term_query(schema.SCHEMA, field, value, index_option="basic"))
    if filters.received_after is not None or filters.received_before is not None:
        # after: inclusive, before: exclusive (an unbounded side must stay inclusive).
        must(
            Query.range_query(
                schema.SCHEMA,
                schema.RECEIVED,
                tantivy.FieldType.Integer,
                _micros_or_none(filters.received_after),
                _micros_or_none(filters.received_before),
                include_lower=True,
                include_upper=filters.received_before is None,
            )
        )
    return clauses


def _mailboxes(filters: MessageFilter) -> Query:
    """The chosen mailboxes: their ids, or (Gmail label folders) their labels on
    their accounts (`MessageFilter`). None at all (a role the account lacks) matches
    nothing."""
    assert filters.mailbox_ids is not None
    alternatives: list[_Clause] = []
    if filters.mailbox_ids:
        mailboxes = [str(mailbox_id) for mailbox_id in filters.mailbox_ids]
        alternatives.append(
            (Occur.Should, Query.term_set_query(schema.SCHEMA, schema.MAILBOX, mailboxes))
        )
    for label, accounts in labels_by_accounts(filters.label_folders).items():
        carried = Query.term_query(schema.SCHEMA, schema.LABEL, label, index_option="basic")
        owners = Query.term_set_query(schema.SCHEMA, schema.ACCOUNT, [str(a) for a in accounts])
        both = Query.boolean_query([(Occur.Must, carried), (Occur.Must, owners)])
        alternatives.append((Occur.Should, both))
    if not alternatives:
        return Query.empty_query()
    return Query.boolean_query(alternatives)


def _micros_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else schema.micros(moment)
