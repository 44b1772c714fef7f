"""Tantivy probe (issue 13): what a Tantivy search index would cost and how fast it answers.

Measurement only; nothing of the product uses Tantivy yet. In one run, in-process (no
HTTP, no PostgreSQL, no notmuch):

1. the mailbox of bench/searchcorpus.py (`generate_mailbox(--messages, --seed)`, the
   same 100,000 messages as bench/search.py) and its 200 queries (`build_queries`);
2. one index of the whole mailbox (one tenant, one account, one INBOX), built by one
   `IndexWriter` with one indexing thread, committed every `--commit-every` messages:
   messages/s and size on disk; the schema is `build_schema`'s (what the product would
   need: ids, tenant/account/mailbox as raw terms, INTERNALDATE as a date fast field,
   subject/from/to/body with positions, stemmed English/German/Russian fields, CJK
   characters as single-character tokens so a CJK word is a phrase);
3. the 200 queries, parsed by mailsvc's own `parse_query` and compiled by hand into
   Tantivy queries (`compile_query`), newest first by the date fast field, top 50,
   with the message ids read from the stored documents and an HTML snippet (Tantivy's
   `SnippetGenerator`, `<b>` around matches) of the first 2,000 characters of each
   hit's body, as the PostgreSQL path does: a warm-up pass then `--rounds` rounds,
   timed per query (parse + compile + search + documents + snippets); the same again
   with snippets over the whole body, without snippets, and with every free-text word
   widened to its English/German/Russian stems;
4. granularity: the same mailbox cut into 20 indexes of 5,000 messages (20 tenants, or
   one tenant with 20 accounts); the RSS of a fresh process that opens the 20 indexes
   and searches each once (and then runs all 200 queries on each), against one that
   opens the single 100,000-message index; and the latency of a tenant-wide search
   fanned out over the 20 indexes and merged (what per-account indexes cost a search
   over all of a tenant's accounts).

Run: `.venv/bin/python bench/tantivy_probe.py [--messages 100000] [--seed 1]
[--rounds 3] [--commit-every 10000] [--json FILE] [--keep DIR]` (~2 min 10 s at 100,000
messages on a 2-vCPU VM). Needs `tantivy` (the dev extra).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tantivy
from searchcorpus import CorpusMessage, Query, build_queries, generate_mailbox
from tantivy import Filter, Occur, Order, TextAnalyzerBuilder, Tokenizer
from tantivy import Query as TQ

from mailsvc.search.query import SearchQuery, parse_query

PAGE = 50
SNIPPET_CHARS = 200
SNIPPET_SOURCE_CHARS = 2_000
"""Excerpts from the first 2,000 characters of the body, as the PostgreSQL path does."""
TENANT = "bench"
ACCOUNT = "acct-1"
MAILBOX = "inbox"
TENANTS = 20
WRITER_HEAP = 256_000_000
TODAY = date(2025, 1, 3)

# A CJK character is a token of its own (a word is then the phrase of its characters,
# which finds it inside a sentence, like today's bigrams); runs of other letters and
# digits are words. `[A--B]` is Rust regex class subtraction.
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
WORDS_PATTERN = rf"[{_CJK}]|[[\p{{L}}\p{{N}}]--[{_CJK}]]+"
STEMMERS = {"en": "english", "de": "german", "ru": "russian"}
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WEBSEARCH_TERM = re.compile(r'-?"[^"]*"?|\S+')


# -- analyzers and schema --------------------------------------------------------------


def words_analyzer() -> tantivy.TextAnalyzer:
    """Lower-cased words, CJK characters one by one; no stemming (today's `simple`)."""
    return (
        TextAnalyzerBuilder(Tokenizer.regex(WORDS_PATTERN))
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .build()
    )


def stem_analyzer(language: str) -> tantivy.TextAnalyzer:
    return (
        TextAnalyzerBuilder(Tokenizer.regex(WORDS_PATTERN))
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .filter(Filter.stemmer(STEMMERS[language]))
        .build()
    )


ANALYZERS: dict[str, tantivy.TextAnalyzer] = {
    "words": words_analyzer(),
    **{f"stem_{lang}": stem_analyzer(lang) for lang in STEMMERS},
}
TEXT_FIELDS = ("subject", "from_", "to", "body")


def build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    for name in ("tenant", "account", "mailbox"):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    builder.add_date_field("date", fast=True)
    builder.add_boolean_field("has_attachment", indexed=True)
    builder.add_boolean_field("unread", indexed=True)
    for name in ("subject", "from_", "to"):
        builder.add_text_field(name, tokenizer_name="words", index_option="position")
    builder.add_text_field("body", stored=True, tokenizer_name="words", index_option="position")
    # Subject and body again, stemmed, in the field of the message's language only
    # (the product would detect it; the corpus knows it). No positions: words only.
    for language in STEMMERS:
        builder.add_text_field(f"stem_{language}", tokenizer_name=f"stem_{language}",
                               index_option="freq")  # fmt: skip
    return builder.build()


def open_index(path: Path, schema: tantivy.Schema | None = None) -> tantivy.Index:
    index = tantivy.Index(schema, path=str(path)) if schema else tantivy.Index.open(str(path))
    for name, analyzer in ANALYZERS.items():
        index.register_tokenizer(name, analyzer)
    return index


def _people(people: Sequence[Any]) -> str:
    return " ".join(f"{p.name} {p.address}" for p in people)


def document_of(message: CorpusMessage, tenant: str) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_text("id", str(message.id))
    doc.add_text("tenant", tenant)
    doc.add_text("account", ACCOUNT)
    doc.add_text("mailbox", MAILBOX)
    doc.add_date("date", message.internal_date)
    doc.add_boolean("has_attachment", bool(message.attachments))
    doc.add_boolean("unread", "\\Seen" not in message.flags)
    doc.add_text("subject", message.subject)
    doc.add_text("from_", _people([message.sender]))
    doc.add_text("to", _people([*message.to, *message.cc]))
    doc.add_text("body", message.text_body)
    if message.language in STEMMERS:
        doc.add_text(f"stem_{message.language}", f"{message.subject}\n{message.text_body}")
    return doc


def directory_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


@dataclass
class BuildReport:
    messages: int
    seconds: float
    mib: float
    segments: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def build_index(
    path: Path, messages: Sequence[CorpusMessage], *, tenant: str, commit_every: int
) -> BuildReport:
    """One writer, one indexing thread, a commit every `commit_every` messages, then
    the merges waited for: the time a first index of a mailbox takes."""
    path.mkdir(parents=True, exist_ok=True)
    index = open_index(path, build_schema())
    started = time.perf_counter()
    writer = index.writer(heap_size=WRITER_HEAP, num_threads=1)
    for n, message in enumerate(messages, 1):
        writer.add_document(document_of(message, tenant))
        if n % commit_every == 0:
            writer.commit()
    writer.commit()
    writer.wait_merging_threads()
    seconds = time.perf_counter() - started
    index.reload()
    return BuildReport(len(messages), seconds, directory_mib(path), index.searcher().num_segments)


# -- queries ---------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return ANALYZERS["words"].analyze(text)


def _undo_bigrams(text: str) -> str:
    """parse_query writes a CJK word as the phrase of its bigrams ("中文 文字"): this
    index has characters, so put the word back together ("中文字")."""
    parts = text.split()
    if (
        parts
        and all(len(p) == 2 and _CJK_RUN.fullmatch(p[0]) for p in parts)
        and all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    ):
        return parts[0] + "".join(p[1] for p in parts[1:])
    return text


def _match(schema: tantivy.Schema, field: str, text: str) -> tantivy.Query | None:
    """The words of `text` in `field`: a term, or a phrase when it analyses to several."""
    tokens = _tokens(_undo_bigrams(text))
    if not tokens:
        return None
    if len(tokens) == 1:
        return TQ.term_query(schema, field, tokens[0])
    return TQ.phrase_query(schema, field, tokens)


def _any_field(
    schema: tantivy.Schema, text: str, *, stemmed: bool, fields: Sequence[str] = TEXT_FIELDS
) -> tantivy.Query | None:
    """A free-text word or phrase in any of `fields` (the PostgreSQL document covers
    subject, addresses and body); `stemmed` adds each language's stem of a single word."""
    alternatives = [q for f in fields if (q := _match(schema, f, text)) is not None]
    if stemmed and len(_tokens(text)) == 1 and not _CJK_RUN.search(text):
        for language in STEMMERS:
            stems = ANALYZERS[f"stem_{language}"].analyze(text)
            if stems:
                alternatives.append(TQ.term_query(schema, f"stem_{language}", stems[0]))
    if not alternatives:
        return None
    if len(alternatives) == 1:
        return alternatives[0]
    return TQ.boolean_query([(Occur.Should, q) for q in alternatives])


def _free_text(schema: tantivy.Schema, text: str, *, stemmed: bool) -> list[tuple[Any, Any]]:
    """websearch syntax (words, "phrases", OR, -exclusions) as boolean clauses."""
    clauses: list[tuple[Any, Any]] = []
    pending_or = False
    for term in _WEBSEARCH_TERM.findall(text):
        if term == "OR":
            pending_or = bool(clauses) and clauses[-1][0] is Occur.Must
            continue
        negated = term.startswith("-") and len(term) > 1
        body = term[1:] if negated else term
        query = _any_field(schema, body.strip('"'), stemmed=stemmed and not negated)
        if query is None:
            continue
        if negated:
            clauses.append((Occur.MustNot, query))
        elif pending_or:
            previous = clauses.pop()[1]
            clauses.append((Occur.Must, TQ.boolean_query(
                [(Occur.Should, previous), (Occur.Should, query)])))  # fmt: skip
        else:
            clauses.append((Occur.Must, query))
        pending_or = False
    return clauses


def _day(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


def compile_query(
    schema: tantivy.Schema, parsed: SearchQuery, *, tenant: str, stemmed: bool = False
) -> tantivy.Query:
    """A parsed Gmail-style search as one Tantivy BooleanQuery, scoped to `tenant`.

    Covers what the 200 bench queries use (free text, from:, to:, subject:, dates,
    has:attachment, is:unread/read/starred); mailbox scoping would be a term on
    `mailbox` like the tenant's.
    """
    clauses: list[tuple[Any, Any]] = [(Occur.Must, TQ.term_query(schema, "tenant", tenant))]
    clauses += _free_text(schema, parsed.text, stemmed=stemmed)
    for field, values, occur in (
        ("from_", parsed.from_, Occur.Must),
        ("to", parsed.to, Occur.Must),
        ("subject", parsed.subject, Occur.Must),
        ("from_", parsed.excluded_from, Occur.MustNot),
        ("to", parsed.excluded_to, Occur.MustNot),
        ("subject", parsed.excluded_subject, Occur.MustNot),
    ):
        for value in values:
            query = _match(schema, field, value.strip('"'))
            if query is not None:
                clauses.append((occur, query))
    for field, value in (("has_attachment", parsed.has_attachment), ("unread", parsed.unread)):
        if value is not None:
            clauses.append((Occur.Must, TQ.term_query(schema, field, value)))
    if parsed.after or parsed.before:
        clauses.append((Occur.Must, TQ.range_query(
            schema, "date", tantivy.FieldType.Date,
            _day(parsed.after) if parsed.after else None,
            _day(parsed.before) if parsed.before else None,
            include_upper=False,
        )))  # fmt: skip
    return TQ.boolean_query(clauses)


@dataclass
class Page:
    ids: list[str]
    snippets: list[str]
    dates: list[int]


def _snippet(generator: tantivy.SnippetGenerator, doc: tantivy.Document, chars: int | None) -> str:
    if chars is None:
        return generator.snippet_from_doc(doc).to_html()
    head = tantivy.Document()
    head.add_text("body", (doc.get_first("body") or "")[:chars])
    return generator.snippet_from_doc(head).to_html()


def search_page(
    index: tantivy.Index,
    q: str,
    *,
    tenant: str,
    snippets: bool = True,
    stemmed: bool = False,
    snippet_source: int | None = SNIPPET_SOURCE_CHARS,
) -> Page:
    """What the API's search would do against the index: parse, compile, newest-first
    top 50 by the date fast field, read the stored ids, snippet the bodies."""
    searcher = index.searcher()
    schema = index.schema
    query = compile_query(schema, parse_query(q, today=TODAY), tenant=tenant, stemmed=stemmed)
    result = searcher.search(query, limit=PAGE, count=False, order_by_field="date",
                             order=Order.Desc)  # fmt: skip
    generator = None
    if snippets and result.hits:
        generator = tantivy.SnippetGenerator.create(searcher, query, schema, "body")
        generator.set_max_num_chars(SNIPPET_CHARS)
    page = Page([], [], [])
    for key, address in result.hits:
        doc = searcher.doc(address)
        page.ids.append(doc.get_first("id"))
        page.dates.append(key)
        if generator is not None:
            page.snippets.append(_snippet(generator, doc, snippet_source))
    return page


def search_fanned_out(indexes: Sequence[tuple[str, tantivy.Index]], q: str) -> Page:
    """A search over all of a tenant's accounts with one index per account: top 50 of
    each index by date, merged, then the stored documents and snippets of the 50."""
    parsed = parse_query(q, today=TODAY)
    candidates = []
    for n, (tenant, index) in enumerate(indexes):
        searcher = index.searcher()
        query = compile_query(index.schema, parsed, tenant=tenant)
        result = searcher.search(query, limit=PAGE, count=False, order_by_field="date",
                                 order=Order.Desc)  # fmt: skip
        candidates += [(key, n, address, query) for key, address in result.hits]
    page = Page([], [], [])
    for key, n, address, query in heapq.nlargest(PAGE, candidates, key=lambda c: c[0]):
        index = indexes[n][1]
        searcher = index.searcher()
        doc = searcher.doc(address)
        generator = tantivy.SnippetGenerator.create(searcher, query, index.schema, "body")
        generator.set_max_num_chars(SNIPPET_CHARS)
        page.ids.append(doc.get_first("id"))
        page.snippets.append(_snippet(generator, doc, SNIPPET_SOURCE_CHARS))
        page.dates.append(key)
    return page


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples, 0.5) * 1000,
        "p95": percentile(samples, 0.95) * 1000,
        "p99": percentile(samples, 0.99) * 1000,
        "max": max(samples) * 1000,
    }


def describe(summary: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in summary.items())


def time_queries(
    queries: Sequence[Query], rounds: int, run: Callable[[str], Page]
) -> tuple[dict[str, list[float]], dict[str, Page]]:
    """A warm-up pass, then `rounds` timed passes over `queries`, one at a time."""
    pages = {query.q: run(query.q) for query in queries}
    seconds: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for query in queries:
            started = time.perf_counter()
            run(query.q)
            seconds[query.q].append(time.perf_counter() - started)
    return seconds, pages


def per_kind(queries: Sequence[Query], seconds: dict[str, list[float]]) -> list[dict[str, Any]]:
    kinds: dict[str, list[float]] = defaultdict(list)
    slowest: dict[str, tuple[float, str]] = {}
    for query in queries:
        kinds[query.kind] += seconds[query.q]
        median = statistics.median(seconds[query.q])
        if median > slowest.get(query.kind, (-1.0, ""))[0]:
            slowest[query.kind] = (median, query.q)
    rows = [
        {"kind": kind, "n": len(s), **summary_ms(s), "slowest": slowest[kind][1]}
        for kind, s in kinds.items()
    ]
    return sorted(rows, key=lambda row: -row["p95"])


# -- memory of a process with indexes open -------------------------------------------


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def memory_child(paths: list[str], queries: list[str], mode: str) -> dict[str, Any]:
    """Run in a fresh process (`--memory-child`): open `paths`, search, report memory.

    mode "none": imports only; "once": one search per index (the i-th query on the
    i-th index); "all": then every query on every index.
    """
    report: dict[str, Any] = {}

    def snapshot(label: str) -> None:
        report[label] = {k: _status_kib(k) / 1024 for k in ("VmRSS", "RssAnon", "RssFile",
                                                              "VmHWM")}  # fmt: skip

    snapshot("imported")
    indexes = [(f"t{i}" if len(paths) > 1 else TENANT, open_index(Path(p)))
               for i, p in enumerate(paths)]  # fmt: skip
    snapshot("opened")
    if mode in ("once", "all"):
        for i, (tenant, index) in enumerate(indexes):
            search_page(index, queries[i % len(queries)], tenant=tenant)
        snapshot("searched_once")
    if mode == "all":
        for tenant, index in indexes:
            for q in queries:
                search_page(index, q, tenant=tenant)
        snapshot("searched_all")
    return report


def measure_fan_out(
    tenant_paths: Sequence[Path], queries: Sequence[Query], rounds: int, figures: dict[str, Any]
) -> None:
    """A tenant-wide search over 20 per-account indexes, and one search of one of them."""
    small = [(f"t{i}", open_index(path)) for i, path in enumerate(tenant_paths)]
    seconds, _ = time_queries(queries, max(1, rounds - 1), lambda q: search_fanned_out(small, q))
    flat = [s for values in seconds.values() for s in values]
    figures["fan_out_20"] = summary_ms(flat)
    print(f"tenant-wide search fanned out over the {TENANTS} indexes, merged, snippets: "
          f"{describe(summary_ms(flat))}")  # fmt: skip
    one = small[0][1]
    seconds, _ = time_queries(queries, rounds, lambda q: search_page(one, q, tenant="t0"))
    flat = [s for values in seconds.values() for s in values]
    figures["one_small_index"] = summary_ms(flat)
    print(f"one of the {TENANTS} indexes alone, same queries: {describe(summary_ms(flat))}")


def measure_memory(paths: Sequence[Path], queries: Sequence[Query], mode: str) -> dict[str, Any]:
    """The memory_child report of a new interpreter (so nothing of this process counts)."""
    spec = json.dumps({"paths": [str(p) for p in paths], "queries": [q.q for q in queries],
                       "mode": mode})  # fmt: skip
    out = subprocess.run([sys.executable, __file__, "--memory-child", spec], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commit-every", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", type=Path, help="build the indexes here and keep them")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        spec = json.loads(args.memory_child)
        print(json.dumps(memory_child(spec["paths"], spec["queries"], spec["mode"])))
        return

    figures: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/tantivy_probe.py", *sys.argv[1:]]),
        "tantivy": version("tantivy"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    print(f"tantivy-py {version('tantivy')} ({tantivy.__version__}); "
          f"Python {figures['python']}; {os.cpu_count()} CPUs")  # fmt: skip
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mailsvc-tantivy-probe-"))
    if args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        run(args, workdir, figures)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


def run(args: argparse.Namespace, workdir: Path, figures: dict[str, Any]) -> None:
    started = time.perf_counter()
    mailbox = generate_mailbox(args.messages, args.seed)
    queries = build_queries(mailbox, args.seed)
    messages = mailbox.messages
    print(f"mailbox: {len(messages):,} messages and {len(queries)} queries generated in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip

    # 1. One index of the whole mailbox.
    whole = build_index(workdir / "whole", messages, tenant=TENANT, commit_every=args.commit_every)
    figures["build_whole"] = vars(whole) | {"per_second": whole.per_second}
    print(f"one index, {whole.messages:,} messages: {whole.seconds:.1f} s "
          f"({whole.per_second:,.0f} msg/s, 1 thread, commit every {args.commit_every:,}), "
          f"{whole.mib:,.0f} MiB on disk, {whole.segments} segments")  # fmt: skip

    measure_latency(workdir / "whole", queries, args.rounds, figures)
    measure_granularity(workdir, messages, queries, args, figures)


def measure_latency(
    path: Path, queries: Sequence[Query], rounds: int, figures: dict[str, Any]
) -> None:
    """The 200 queries against the one index, in four variants, and per kind."""
    index = open_index(path)
    variants: dict[str, Callable[[str], Page]] = {
        "search + ids + snippets": lambda q: search_page(index, q, tenant=TENANT),
        "snippets over the whole body": lambda q: search_page(index, q, tenant=TENANT,
                                                              snippet_source=None),
        "search + ids, no snippets": lambda q: search_page(index, q, tenant=TENANT,
                                                           snippets=False),
        "stemmed words (en/de/ru), snippets": lambda q: search_page(index, q, tenant=TENANT,
                                                                   stemmed=True),
    }  # fmt: skip
    figures["latency"] = {}
    samples = f"{len(queries)} queries x {rounds}"
    main_seconds: dict[str, list[float]] = {}
    pages: dict[str, Page] = {}
    for label, call in variants.items():
        seconds, variant_pages = time_queries(queries, rounds, call)
        flat = [s for values in seconds.values() for s in values]
        figures["latency"][label] = summary_ms(flat)
        with_hits = sum(1 for page in variant_pages.values() if page.ids)
        figures["latency"][label]["queries_with_hits"] = with_hits
        print(f"{label} ({samples}): {describe(summary_ms(flat))}; {with_hits} with hits")
        if not main_seconds:
            main_seconds, pages = seconds, variant_pages
    figures["kinds"] = per_kind(queries, main_seconds)
    print(f"\n{'kind':<15} {'n':>3} {'p50':>7} {'p95':>7} {'p99':>7}  slowest (median)")
    for row in figures["kinds"]:
        print(f"{row['kind']:<15} {row['n']:>3} {row['p50']:>7.2f} {row['p95']:>7.2f} "
              f"{row['p99']:>7.2f}  {row['slowest']}")  # fmt: skip
    example = next(p for q, p in pages.items() if p.snippets and '"' in q)
    figures["example_snippet"] = example.snippets[0]
    print(f"\nexample snippet: {example.snippets[0]!r}")
    ordered = all(p.dates == sorted(p.dates, reverse=True) for p in pages.values())
    print(f"every page newest first: {ordered}")


def measure_granularity(
    workdir: Path,
    messages: Sequence[CorpusMessage],
    queries: Sequence[Query],
    args: argparse.Namespace,
    figures: dict[str, Any],
) -> None:
    """Twenty indexes of a twentieth each: build, fan-out latency, memory vs one index."""
    slice_size = len(messages) // TENANTS
    tenant_paths: list[Path] = []
    tenant_builds: list[BuildReport] = []
    for i in range(TENANTS):
        path = workdir / f"tenant-{i:02d}"
        part = messages[i * slice_size : (i + 1) * slice_size]
        tenant_builds.append(build_index(path, part, tenant=f"t{i}",
                                         commit_every=args.commit_every))  # fmt: skip
        tenant_paths.append(path)
    built_seconds = sum(b.seconds for b in tenant_builds)
    figures["build_tenants"] = {
        "indexes": TENANTS,
        "messages_each": slice_size,
        "seconds": built_seconds,
        "per_second": slice_size * TENANTS / built_seconds,
        "mib_total": sum(b.mib for b in tenant_builds),
        "mib_each": statistics.median(b.mib for b in tenant_builds),
    }
    print(f"\n{TENANTS} indexes of {slice_size:,}: {built_seconds:.1f} s "
          f"({figures['build_tenants']['per_second']:,.0f} msg/s), "
          f"{figures['build_tenants']['mib_total']:,.0f} MiB in all "
          f"({figures['build_tenants']['mib_each']:.1f} MiB each)")  # fmt: skip

    measure_fan_out(tenant_paths, queries, args.rounds, figures)

    memory = {
        "baseline (imports only)": measure_memory([], queries, "none"),
        f"1 index of {len(messages):,}": measure_memory([workdir / "whole"], queries, "all"),
        f"{TENANTS} indexes of {slice_size:,}": measure_memory(tenant_paths, queries, "all"),
    }
    figures["memory_mib"] = memory
    print("\nRSS of a fresh process (MiB; anon = heap, file = mmapped index pages)")
    for label, report in memory.items():
        cells = "; ".join(
            f"{stage}: RSS {m['VmRSS']:.0f} (anon {m['RssAnon']:.0f}, file {m['RssFile']:.0f})"
            for stage, m in report.items()
        )
        print(f"  {label}: {cells}")


if __name__ == "__main__":
    main()
