"""A deterministic, varied corpus of RFC 5322 messages for the parsing and sync benchmarks.

`generate_corpus(count, seed)` yields raw messages (CRLF line ends, as an IMAP server
serves them) whose mix is meant to look like a real mailbox rather than a best case:

- sizes from ~1 KB to ~2 MB: most messages are small text mail, about a quarter carry
  small attachments (logos, short PDFs), a few percent carry large ones;
- structures: text/plain, HTML only, multipart/alternative, multipart/related with
  inline images, multipart/mixed with attachments, forwarded message/rfc822;
- languages and charsets: English (us-ascii / utf-8), German and French (iso-8859-1,
  utf-8), Russian (koi8-r, windows-1251, utf-8), Chinese (gb2312, utf-8), Japanese
  (iso-2022-jp, shift_jis); RFC 2047 subjects and display names, RFC 2231 filenames;
- transfer encodings: 7bit, 8bit, quoted-printable and base64;
- threads: about 30 % of the messages reply to an earlier one with `In-Reply-To`,
  `References` and a `Re:` subject, quoting it;
- a realistic header block (Received chain, DKIM signature, list headers).

The same (count, seed) always gives the same bytes, so figures from different runs and
from the sync benchmark (which delivers this corpus into Dovecot) compare.

Run as a script to print the corpus' size statistics.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from typing import TypeVar

CRLF = "\r\n"

# Word stock per language; sentences are sampled from these so bodies look like text
# (word lengths, punctuation, non-ASCII density) without shipping a real mail dump.
WORDS = {
    "en": (
        "the meeting project report budget quarter please review attached draft "
        "schedule customer order invoice update team release deadline thanks "
        "regards question answer server account payment shipping tomorrow "
        "office contract proposal agenda notes follow up call week monday friday"
    ).split(),
    "de": (
        "Besprechung Bericht Angebot Rechnung bitte prüfen Anhang Entwurf Termin "
        "Kunde Bestellung Grüße Frage Antwort Größe Übersicht Änderung schön "
        "morgen Woche Vertrag Tagesordnung Straße Mitarbeiter Zuständigkeit für "
        "über natürlich Lösung möglich Gebühr"
    ).split(),
    "fr": (
        "réunion rapport projet facture été déjà très bientôt ci-joint brouillon "
        "échéance client commande mise à jour équipe question réponse "
        "prochaine semaine contrat ordre du jour cordialement merci"
    ).split(),
    "ru": (
        "встреча отчёт проект счёт пожалуйста посмотрите вложение черновик "
        "график клиент заказ обновление команда выпуск срок спасибо вопрос "
        "ответ сервер оплата доставка завтра офис договор неделя понедельник"
    ).split(),
    "zh": list(
        "会议报告项目预算季度请查看附件草稿日程客户订单发票更新团队发布截止日期"
        "谢谢问题答案服务器账户付款运输明天办公室合同提案议程笔记"
    ),
    "ja": list(
        "会議報告書プロジェクト予算四半期添付ファイルを確認してください下書き予定"
        "顧客注文請求書更新チームリリース締め切りありがとうございます質問回答"
    ),
}
# (charset, transfer encoding) choices per language, weighted by how often they are seen.
CHARSETS: dict[str, list[tuple[str, str, int]]] = {
    "en": [("us-ascii", "7bit", 5), ("utf-8", "quoted-printable", 3), ("utf-8", "base64", 1)],
    "de": [
        ("iso-8859-1", "quoted-printable", 3),
        ("utf-8", "quoted-printable", 4),
        ("utf-8", "8bit", 1),
        ("utf-8", "base64", 2),
    ],
    "fr": [
        ("iso-8859-1", "quoted-printable", 2),
        ("utf-8", "quoted-printable", 3),
        ("windows-1252", "8bit", 1),
    ],
    "ru": [("koi8-r", "8bit", 2), ("windows-1251", "base64", 2), ("utf-8", "base64", 3)],
    "zh": [("gb2312", "base64", 3), ("utf-8", "base64", 3)],
    "ja": [("iso-2022-jp", "7bit", 3), ("shift_jis", "base64", 1), ("utf-8", "base64", 2)],
}
LANGUAGES = [("en", 60), ("de", 12), ("fr", 6), ("ru", 8), ("zh", 8), ("ja", 6)]
PEOPLE = {
    "en": ["Alice Walker", "Bob Smith", "Carol Jones", "Dave O'Brien", "Erin Miller"],
    "de": ["Jürgen Müller", "Björn Schäfer", "Anna Weiß", "Lena Groß"],
    "fr": ["Hélène Dupré", "François Lefèvre", "Zoé Garçon"],
    "ru": ["Иван Петров", "Мария Смирнова", "Алексей Кузнецов"],
    "zh": ["张伟", "王芳", "李娜"],
    "ja": ["山田太郎", "佐藤花子", "鈴木一郎"],
}
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example", "lists.example"]
# (content type, extension, weight): what people attach.
ATTACHMENT_KINDS = [
    ("application/pdf", "pdf", 30),
    ("image/png", "png", 15),
    ("image/jpeg", "jpg", 20),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
        10,
    ),
    ("application/zip", "zip", 5),
    ("text/csv", "csv", 8),
    ("text/calendar", "ics", 5),
    ("application/octet-stream", "bin", 7),
]
FILE_STEMS = {
    "en": ["report", "invoice 2024-03", "photo", "contract final", "agenda"],
    "de": ["Bericht Übersicht", "Rechnung März", "Änderungen"],
    "fr": ["facture été", "rapport réunion"],
    "ru": ["отчёт", "счёт на оплату"],
    "zh": ["会议报告", "发票"],
    "ja": ["報告書", "請求書"],
}


@dataclass(slots=True)
class _Sent:
    """What a later reply needs of an earlier message."""

    message_id: str
    references: list[str]
    subject: str
    sender: str
    quote: str


@dataclass(slots=True)
class _State:
    rng: random.Random
    sent: list[_Sent] = field(default_factory=list)
    clock: datetime = field(default_factory=lambda: datetime(2024, 1, 2, 8, 0, tzinfo=UTC))
    sentences: dict[str, list[str]] = field(default_factory=dict)


T = TypeVar("T")


def _weighted(rng: random.Random, items: list[tuple[T, int]]) -> T:
    return rng.choices([item for item, _ in items], [w for _, w in items])[0]


def _sentence_pool(rng: random.Random, language: str) -> list[str]:
    words = WORDS[language]
    joiner = "" if language in ("zh", "ja") else " "
    stop = "。" if language in ("zh", "ja") else "."
    pool = []
    for _ in range(300):
        sentence = joiner.join(rng.choice(words) for _ in range(rng.randint(4, 16)))
        pool.append(sentence[:1].upper() + sentence[1:] + stop)
    return pool


def _text(state: _State, language: str, size: int) -> str:
    """About `size` characters of paragraphs in `language`."""
    pool = state.sentences.get(language)
    if pool is None:
        pool = state.sentences[language] = _sentence_pool(state.rng, language)
    rng = state.rng
    paragraphs: list[str] = []
    total = 0
    while total < size:
        paragraph = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 6)))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def _wrap(text: str, width: int = 76) -> str:
    """Hard-wrap long lines as mail clients do (format=flowed aside)."""
    out: list[str] = []
    for line in text.split("\n"):
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = width if cut <= 0 else cut
            out.append(line[:cut])
            line = line[cut:].lstrip(" ")
        out.append(line)
    return "\n".join(out)


def _html(text: str, rng: random.Random) -> str:
    """A marketing/Outlook-flavoured HTML rendering of `text`."""
    style = (
        "<style>body{font-family:Arial,sans-serif;font-size:14px}"
        "p{margin:0 0 12px}.footer{color:#888}</style>"
    )
    paragraphs = "".join(
        f'<p style="margin:0 0 12px">{_escape(paragraph)}</p>\n' for paragraph in text.split("\n\n")
    )
    table = ""
    if rng.random() < 0.3:
        rows = "".join(
            f"<tr><td>{i}</td><td>item &amp; more</td>"
            f"<td>{rng.randint(1, 999)}&nbsp;&euro;</td></tr>"
            for i in range(rng.randint(2, 20))
        )
        table = f'<table border="0" cellpadding="4">{rows}</table>\n'
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<title>Message</title>{style}</head>\n<body>\n<div class="content">\n'
        f"{paragraphs}{table}</div>\n"
        '<div class="footer"><a href="https://example.com/unsubscribe">Unsubscribe</a>'
        "</div>\n</body></html>"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _encode_body(text: str, charset: str, cte: str) -> bytes:
    raw = text.replace("\n", "\r\n").encode(_python_codec(charset), errors="replace")
    if cte == "base64":
        return base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(raw.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return raw


def _python_codec(charset: str) -> str:
    # The corpus declares gb2312 but, like real mailers, may use GBK-only characters.
    return {"gb2312": "gb18030", "us-ascii": "ascii"}.get(charset, charset)


def _header_words(text: str, charset: str) -> str:
    """An RFC 2047 encoded header value, as mailers write non-ASCII subjects and names."""
    if text.isascii():
        return text
    codec_charset = "utf-8" if charset in ("us-ascii",) else charset
    try:
        text.encode(_python_codec(codec_charset))
    except UnicodeEncodeError:
        codec_charset = "utf-8"
    return Header(text, codec_charset if codec_charset != "gb2312" else "utf-8").encode()


def _address(state: _State, language: str, charset: str) -> tuple[str, str]:
    rng = state.rng
    name = rng.choice(PEOPLE[language])
    local = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "user"
    address = f"{local}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    if rng.random() < 0.15:
        return address, address
    encoded = _header_words(name, charset)
    if encoded == name and any(ch in name for ch in "'.,"):
        encoded = f'"{name}"'
    return f"{encoded} <{address}>", address


def _attachment(state: _State, language: str, size: int) -> tuple[str, list[str], bytes]:
    """(content type, extra header lines, base64 body) of one attachment."""
    rng = state.rng
    content_type, extension = _weighted(
        rng, [((ctype, ext), weight) for ctype, ext, weight in ATTACHMENT_KINDS]
    )
    stem = rng.choice(FILE_STEMS[language] + FILE_STEMS["en"])
    filename = f"{stem}.{extension}"
    if content_type.startswith("text/"):
        payload = _text(state, "en", size).encode()
    else:
        payload = rng.randbytes(size)
    if filename.isascii():
        name_params = f'; name="{filename}"', f'; filename="{filename}"'
    elif rng.random() < 0.5:
        # RFC 2231 (Thunderbird, Apple Mail).
        quoted = "".join(
            chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in ".-_") else f"%{b:02X}"
            for b in filename.encode()
        )
        name_params = "", f"; filename*=utf-8''{quoted}"
    else:
        # RFC 2047 inside the quoted parameter (Outlook, Gmail): not standard, common.
        words = _header_words(filename, "utf-8")
        name_params = f'; name="{words}"', f'; filename="{words}"'
    headers = [
        f"Content-Type: {content_type}{name_params[0]}",
        f"Content-Disposition: attachment{name_params[1]}",
        "Content-Transfer-Encoding: base64",
    ]
    return content_type, headers, base64.encodebytes(payload).replace(b"\n", b"\r\n")


def _leaf(headers: list[str], body: bytes) -> bytes:
    return (CRLF.join(headers) + CRLF + CRLF).encode() + body


def _multipart(subtype: str, parts: list[bytes], rng: random.Random, extra: str = "") -> bytes:
    boundary = f"----=_Part_{rng.getrandbits(64):016x}"
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra}{CRLF}{CRLF}'
    chunks = [head.encode(), b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        chunks.append(f"{CRLF}--{boundary}{CRLF}".encode())
        chunks.append(part)
    chunks.append(f"{CRLF}--{boundary}--{CRLF}".encode())
    return b"".join(chunks)


def _text_part(text: str, subtype: str, charset: str, cte: str) -> bytes:
    return _leaf(
        [
            f'Content-Type: text/{subtype}; charset="{charset}"',
            f"Content-Transfer-Encoding: {cte}",
        ],
        _encode_body(text, charset, cte),
    )


def _size_class(rng: random.Random) -> tuple[int, list[int]]:
    """(text characters, attachment sizes in bytes) drawn from a mailbox-like mix."""
    text_size = int(min(60_000, max(200, rng.lognormvariate(8.0, 1.0))))  # median ~3 KB
    roll = rng.random()
    if roll < 0.70:
        return text_size, []
    if roll < 0.94:
        count = rng.choice([1, 1, 1, 2, 3])
        return text_size, [int(rng.uniform(5_000, 110_000)) for _ in range(count)]
    if roll < 0.985:
        return text_size, [int(rng.uniform(110_000, 600_000))]
    return text_size, [int(rng.uniform(600_000, 1_400_000))]


def _headers(
    state: _State,
    *,
    language: str,
    charset: str,
    subject: str,
    sender: str,
    message_id: str,
    parent: _Sent | None,
) -> list[str]:
    rng = state.rng
    state.clock += timedelta(seconds=rng.randint(10, 3_600))
    received = [
        f"Received: from mx{i}.{rng.choice(DOMAINS)} (mx{i}.{rng.choice(DOMAINS)} "
        f"[192.0.2.{rng.randint(1, 254)}]){CRLF}\tby mail.example.com (Postfix) with ESMTPS id "
        f"{rng.getrandbits(40):010X}{CRLF}\tfor <user@example.com>; "
        f"{format_datetime(state.clock - timedelta(seconds=i))}"
        for i in range(rng.randint(2, 6))
    ]
    recipients = [_address(state, language, charset)[0] for _ in range(rng.randint(1, 4))]
    headers = [
        "Return-Path: <bounce@example.com>",
        *received,
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;"
        f"{CRLF}\th=from:to:subject:date:message-id; bh="
        f"{base64.b64encode(rng.randbytes(32)).decode()};{CRLF}\tb="
        + f"{CRLF}\t ".join(
            base64.b64encode(rng.randbytes(256)).decode()[i : i + 70] for i in range(0, 344, 70)
        ),
        f"Message-ID: <{message_id}>",
        f"Date: {format_datetime(state.clock.astimezone(_zone(rng)))}",
        f"From: {sender}",
        "To: " + f",{CRLF} ".join(recipients),
    ]
    if rng.random() < 0.25:
        headers.append(f"Cc: {_address(state, language, charset)[0]}")
    headers.append(f"Subject: {_header_words(subject, charset)}")
    if parent is not None:
        references = [*parent.references, parent.message_id][-20:]
        headers.append(f"In-Reply-To: <{parent.message_id}>")
        headers.append("References: " + f"{CRLF} ".join(f"<{ref}>" for ref in references))
    if rng.random() < 0.2:
        headers.append("List-Id: <team.lists.example>")
        headers.append("List-Unsubscribe: <https://lists.example/unsubscribe?u=123>")
    headers.append("X-Mailer: " + rng.choice(["Thunderbird 115.0", "Outlook 16.0", "Mutt/2.2"]))
    headers.append("MIME-Version: 1.0")
    return headers


def _zone(rng: random.Random) -> timezone:
    return timezone(timedelta(hours=rng.choice([-8, -5, 0, 1, 2, 3, 8, 9])))


def _message(state: _State, index: int) -> bytes:
    rng = state.rng
    language = _weighted(rng, LANGUAGES)
    charset, cte = _weighted(rng, [((c, e), w) for c, e, w in CHARSETS[language]])
    text_size, attachment_sizes = _size_class(rng)
    text = _wrap(_text(state, language, text_size))
    sender, sender_address = _address(state, language, charset)
    message_id = f"{index}.{rng.getrandbits(48):012x}@{rng.choice(DOMAINS)}"

    parent: _Sent | None = None
    if state.sent and rng.random() < 0.30:
        # Replies mostly follow recent mail, sometimes an old thread is revived.
        recent = state.sent[-50:] if rng.random() < 0.8 else state.sent
        parent = rng.choice(recent)
    if parent is not None:
        subject = parent.subject if parent.subject.startswith("Re: ") else f"Re: {parent.subject}"
        quoted = "\n".join(f"> {line}" for line in parent.quote.split("\n"))
        text = f"{text}\n\nOn {format_datetime(state.clock)}, {parent.sender} wrote:\n{quoted}"
    else:
        subject = _text(state, language, 30).split("\n")[0][: rng.randint(20, 70)].rstrip(".。")

    structure = rng.random()
    html_part = None
    # ISO-2022-JP must stay 7bit; other 8-bit HTML goes quoted-printable, as mailers do.
    qp_ok = cte in ("7bit", "8bit") and charset != "iso-2022-jp"
    html_cte = "quoted-printable" if qp_ok else cte
    if structure < 0.30:
        body = _text_part(text, "plain", charset, cte)
    elif structure < 0.45:
        body = _text_part(_html(text, rng), "html", charset, html_cte)
    else:
        html_part = _text_part(_html(text, rng), "html", charset, html_cte)
        if rng.random() < 0.15:
            # Newsletter style: the HTML references an inline logo.
            logo = base64.encodebytes(rng.randbytes(rng.randint(2_000, 30_000)))
            html_part = _multipart(
                "related",
                [
                    html_part,
                    _leaf(
                        [
                            'Content-Type: image/png; name="logo.png"',
                            "Content-Transfer-Encoding: base64",
                            f"Content-ID: <logo{index}@example.com>",
                            'Content-Disposition: inline; filename="logo.png"',
                        ],
                        logo.replace(b"\n", b"\r\n"),
                    ),
                ],
                rng,
                extra='; type="text/html"',
            )
        body = _multipart("alternative", [_text_part(text, "plain", charset, cte), html_part], rng)

    parts = [body]
    for size in attachment_sizes:
        _, headers, payload = _attachment(state, language, size)
        parts.append(_leaf(headers, payload))
    if parent is not None and rng.random() < 0.03:
        forwarded = _text_part(parent.quote, "plain", "utf-8", "8bit")
        parts.append(
            _leaf(
                ["Content-Type: message/rfc822", "Content-Disposition: attachment"],
                (
                    f"From: {parent.sender}{CRLF}Subject: {_header_words(parent.subject, 'utf-8')}"
                    f"{CRLF}Message-ID: <{parent.message_id}>{CRLF}MIME-Version: 1.0{CRLF}"
                ).encode()
                + forwarded,
            )
        )
    if len(parts) > 1:
        body = _multipart("mixed", parts, rng)

    headers = _headers(
        state,
        language=language,
        charset=charset,
        subject=subject,
        sender=sender,
        message_id=message_id,
        parent=parent,
    )
    state.sent.append(
        _Sent(
            message_id=message_id,
            references=[*parent.references, parent.message_id] if parent else [],
            subject=subject,
            sender=sender_address,
            quote=text[:400],
        )
    )
    if len(state.sent) > 2_000:
        del state.sent[:1_000]
    return (CRLF.join(headers) + CRLF).encode() + body


def generate_corpus(count: int, seed: int) -> Iterator[bytes]:
    """Yield `count` raw messages; the same arguments always give the same bytes."""
    state = _State(rng=random.Random(seed))
    for index in range(count):
        yield _message(state, index)


if __name__ == "__main__":
    sizes = sorted(len(raw) for raw in generate_corpus(10_000, seed=1))
    total = sum(sizes)
    print(
        f"{len(sizes)} messages, {total / 1e6:.1f} MB, mean {total / len(sizes) / 1e3:.1f} KB, "
        f"median {sizes[len(sizes) // 2] / 1e3:.1f} KB, "
        f"p90 {sizes[len(sizes) * 9 // 10] / 1e3:.1f} KB, "
        f"max {sizes[-1] / 1e6:.2f} MB"
    )
