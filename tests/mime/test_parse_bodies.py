"""parse_message: bodies, attachments, section numbers and defect notes."""

# Russian and Chinese test text has letters and punctuation that look like ASCII.
# ruff: noqa: RUF001

from __future__ import annotations

import base64

from mailsvc.mime import MimePart, ParsedAttachment, parse_message
from tests.mime.samples import eml, message


def test_german_latin1_quoted_printable() -> None:
    parsed = parse_message(eml("german.eml"))
    assert parsed.subject == "Grüße aus München"
    assert parsed.from_[0].name == "Jürgen Müller"
    assert parsed.to[0].name == "Anna Weiß"
    assert parsed.text_body is not None
    assert "viele Grüße aus München! Die Größe der Übersicht ist schön." in parsed.text_body
    assert parsed.html_body is None
    assert parsed.snippet.startswith("Liebe Anna, viele Grüße aus München!")
    assert parsed.parse_errors == []


def test_russian_koi8r() -> None:
    parsed = parse_message(eml("russian.eml"))
    assert parsed.subject == "Отчёт за неделю"
    assert parsed.from_[0].name == "Иван Петров"
    assert parsed.text_body == "Мария, добрый день!\n\nОтчёт во вложении. Спасибо.\n"
    assert parsed.parse_errors == []


def test_chinese_gb2312_html_only_gets_text_from_html() -> None:
    parsed = parse_message(eml("chinese.eml"))
    assert parsed.subject == "会议报告"
    assert parsed.from_[0].name == "王芳"
    # 镕 is outside GB2312: read through the GB18030 superset, without a note.
    assert parsed.html_body is not None
    assert "朱镕基" in parsed.html_body
    assert parsed.text_body == "你好，朱镕基！\n\n会议报告在附件中。\n谢谢"
    assert parsed.snippet == "你好，朱镕基！ 会议报告在附件中。 谢谢"
    assert parsed.parse_errors == []


def test_html_only_text_drops_scripts_styles_and_keeps_breaks() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<script>alert('x')</script><p>First &amp; foremost</p><p>Line one<br>line two</p>"
        "</body></html>"
    )
    parsed = parse_message(message("Content-Type: text/html; charset=utf-8", body=html))
    assert parsed.html_body == html
    assert parsed.text_body == "First & foremost\n\nLine one\nline two"


def test_alternative_gives_both_bodies() -> None:
    parsed = parse_message(eml("nested.eml"))
    assert parsed.text_body == "Plain body.\n"
    assert parsed.html_body == "<p>HTML body.</p>\n"


def test_alternative_with_blank_plain_part_falls_back_to_html() -> None:
    raw = message(
        'Content-Type: multipart/alternative; boundary="b"',
        body="--b\nContent-Type: text/plain\n\n \n--b\nContent-Type: text/html\n\n"
        "<p>Real</p>\n--b--\n",
    )
    assert parse_message(raw).text_body == "Real"


def test_section_numbers_of_a_nested_message() -> None:
    # mixed[ alternative[plain, html], image, message/rfc822[ mixed[plain, pdf] ] ]
    parsed = parse_message(eml("nested.eml"))
    assert parsed.parts == [
        MimePart("1.1", "text/plain"),
        MimePart("1.2", "text/html"),
        MimePart("2", "image/png"),
        MimePart("3", "message/rfc822"),
        MimePart("3.1", "text/plain"),
        MimePart("3.2", "application/pdf"),
    ]
    photo, forwarded = parsed.attachments
    assert photo == ParsedAttachment(
        filename="photo.png",
        content_type="image/png",
        size=8 + 1024,
        content_id=None,
        is_inline=False,
        section="2",
        encoding="base64",
    )
    # The attached message is one attachment; its insides are not ours.
    assert forwarded.section == "3"
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "forwarded.eml"
    assert forwarded.encoding is None
    assert parsed.has_attachments
    assert parsed.parse_errors == []


def test_attached_message_size_is_its_byte_length() -> None:
    raw = eml("nested.eml")
    start = raw.index(b"Message-ID: <inner-1")
    end = raw.index(b"\r\n--outer--")
    assert parse_message(raw).attachments[1].size == end - start


def test_single_part_message_is_section_1() -> None:
    parsed = parse_message(message("Subject: x"))
    assert parsed.parts == [MimePart("1", "text/plain")]


def test_top_level_attachment_only_message() -> None:
    raw = message(
        "Content-Type: application/pdf; name=a.pdf",
        "Content-Transfer-Encoding: base64",
        body=base64.encodebytes(b"%PDF" * 100).decode(),
    )
    parsed = parse_message(raw)
    assert parsed.text_body is None
    assert parsed.snippet == ""
    assert [(a.section, a.filename, a.size) for a in parsed.attachments] == [("1", "a.pdf", 400)]


def test_inline_cid_images_in_related() -> None:
    parsed = parse_message(eml("inline_cid.eml"))
    assert parsed.text_body == "Newsletter text.\n"
    assert parsed.html_body is not None
    assert 'src="cid:logo@example.com"' in parsed.html_body
    logo, unused = parsed.attachments
    assert (logo.section, logo.content_id, logo.is_inline, logo.size) == (
        "2.2",
        "logo@example.com",
        True,
        200,
    )
    # A related resource that the HTML never references is a plain attachment.
    assert (unused.section, unused.filename, unused.is_inline) == ("2.3", "unused.gif", False)
    assert parsed.has_attachments


def test_only_embedded_images_is_no_paperclip() -> None:
    raw = message(
        'Content-Type: multipart/related; boundary="r"',
        body='--r\nContent-Type: text/html\n\n<img src="CID:pic@x">\n--r\n'
        "Content-Type: image/png\nContent-ID: <pic@x>\nContent-Transfer-Encoding: base64\n\n"
        "AAAA\n--r--\n",
    )
    parsed = parse_message(raw)
    assert [a.is_inline for a in parsed.attachments] == [True]
    assert not parsed.has_attachments


def test_disposition_inline_is_inline() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\nContent-Type: text/plain\n\nHi\n--m\nContent-Type: image/jpeg\n"
        "Content-Disposition: inline; filename=p.jpg\n\nxx\n--m--\n",
    )
    (picture,) = parse_message(raw).attachments
    assert picture.is_inline
    assert picture.filename == "p.jpg"
    assert picture.size == 2


def test_rfc2231_and_rfc2047_file_names() -> None:
    parsed = parse_message(eml("rfc2231.eml"))
    assert [(a.section, a.filename, a.content_type) for a in parsed.attachments] == [
        ("2", "Übersicht März.pdf", "application/pdf"),
        ("3", "Größen-Tabelle.csv", "text/csv"),
        ("4", "отчёт.docx", "application/octet-stream"),
    ]
    pdf, csv, docx = parsed.attachments
    assert pdf.size == len(base64.b64decode("JVBERi0="))
    assert csv.size == 3  # "a,b"
    assert docx.size == len(b"abc=def")  # quoted-printable is decoded for its size
    assert docx.encoding == "quoted-printable"
    assert parsed.text_body == "See attachments."
    assert parsed.parse_errors == []


def test_text_attachment_is_not_body() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\nContent-Type: text/plain\n\nBody\n--m\nContent-Type: text/plain\n"
        "Content-Disposition: attachment; filename=notes.txt\n\nNotes\n--m\n"
        "Content-Type: text/html; name=page.html\n\n<p>x</p>\n--m--\n",
    )
    parsed = parse_message(raw)
    assert parsed.text_body == "Body"
    assert parsed.html_body is None
    assert [a.filename for a in parsed.attachments] == ["notes.txt", "page.html"]


def test_inline_text_parts_are_concatenated() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\nContent-Type: text/plain\n\nBody\n--m\nContent-Type: text/plain\n"
        "Content-Disposition: inline\n\n-- \nList footer\n--m--\n",
    )
    assert parse_message(raw).text_body == "Body\n-- \nList footer"


def test_bad_base64_is_repaired_with_a_note() -> None:
    parsed = parse_message(eml("bad_base64.eml"))
    assert parsed.text_body == "Hello world!Hi"
    assert parsed.attachments[0].size == 5
    assert parsed.parse_errors == [
        "part 1: invalid base64 repaired",
        "part 2: base64 length is not a multiple of 4 (truncated?)",
    ]


def test_unknown_charset_falls_back_with_a_note() -> None:
    parsed = parse_message(eml("unknown_charset.eml"))
    assert parsed.text_body == "Café — naïve\n"
    assert parsed.parse_errors == ["part 1: unknown charset 'x-klingon-9'"]


def test_bytes_invalid_in_the_declared_charset_are_replaced() -> None:
    raw = message("Content-Type: text/plain; charset=utf-8").replace(b"Body.", b"Bad \xff\xfe.")
    parsed = parse_message(raw)
    assert parsed.text_body == "Bad \ufffd\ufffd.\n"
    assert parsed.parse_errors == ["part 1: bytes invalid in utf-8 replaced"]


def test_latin1_declared_but_utf8_bytes() -> None:
    raw = message("Content-Type: text/plain; charset=iso-8859-1", body="Grüße\n")
    parsed = parse_message(raw)
    assert parsed.text_body == "Grüße\n"
    assert parsed.parse_errors == ["part 1: declared iso-8859-1 but the bytes are UTF-8"]


def test_missing_boundary_reads_the_body_as_text() -> None:
    parsed = parse_message(eml("missing_boundary.eml"))
    assert parsed.text_body == "Text that should still be readable.\n"
    assert parsed.parse_errors == ["message: multipart without boundary, read as text"]


def test_boundary_never_found_reads_the_body_as_text() -> None:
    raw = message('Content-Type: multipart/mixed; boundary="nope"', body="Just text\n")
    parsed = parse_message(raw)
    assert parsed.text_body == "Just text\n"
    assert parsed.parse_errors == ["message: boundary 'nope' not found, read as text"]


def test_truncated_multipart_keeps_what_arrived() -> None:
    parsed = parse_message(eml("truncated.eml"))
    assert parsed.text_body == "First part."
    assert [(a.section, a.filename) for a in parsed.attachments] == [("2", "cut.pdf")]
    assert "message: closing boundary missing (truncated multipart)" in parsed.parse_errors


def test_boundary_prefix_of_a_longer_line_is_not_a_delimiter() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="b"',
        body="--b\nContent-Type: text/plain\n\none\n--bx not a delimiter\n--b \n\ntwo\n--b--\n",
    )
    parsed = parse_message(raw)
    assert parsed.text_body == "one\n--bx not a delimiter\ntwo"
    assert [part.section for part in parsed.parts] == ["1", "2"]


def test_lf_only_line_ends() -> None:
    raw = eml("nested.eml").replace(b"\r\n", b"\n")
    parsed = parse_message(raw)
    assert [part.section for part in parsed.parts] == ["1.1", "1.2", "2", "3", "3.1", "3.2"]
    assert parsed.text_body == "Plain body.\n"
    assert parsed.attachments[0].size == 1032


def test_max_text_chars_cuts_bodies_with_a_note() -> None:
    parsed = parse_message(message("Subject: big", body="x" * 5000), max_text_chars=1000)
    assert parsed.text_body == "x" * 1000
    assert parsed.parse_errors == ["text body cut at 1000 characters"]


def test_nul_characters_never_reach_the_bodies() -> None:
    parsed = parse_message(message("Subject: x", body="a\x00b\n"))
    assert parsed.text_body == "ab\n"


def test_snippet_skips_quoted_reply() -> None:
    body = "Sounds good,\nsee you.\n\nOn Mon, 4 Mar 2024, Bob wrote:\n> Shall we meet?\n> Bob\n"
    parsed = parse_message(message("Subject: Re: meet", body=body))
    assert parsed.snippet == "Sounds good, see you."


def test_snippet_is_about_200_characters_on_a_word_boundary() -> None:
    parsed = parse_message(message("Subject: x", body="word " * 100))
    assert 170 <= len(parsed.snippet) <= 200
    assert parsed.snippet.endswith("word")


def test_quoted_printable_soft_breaks() -> None:
    raw = message(
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        body="A long line that is=\nsoft broken, caf=C3=A9.\n",
    )
    assert parse_message(raw).text_body == "A long line that issoft broken, café.\n"


def test_uuencoded_part() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\nContent-Type: text/plain\n\nx\n--m\nContent-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 a.bin\n#86)C\n`\nend\n--m--\n",
    )
    assert parse_message(raw).attachments[0].size == 3


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = message(
        'Content-Type: multipart/digest; boundary="d"',
        body="--d\n\nSubject: one\n\nFirst\n--d\n\nSubject: two\n\nSecond\n--d--\n",
    )
    parsed = parse_message(raw)
    assert [(p.section, p.content_type) for p in parsed.parts] == [
        ("1", "message/rfc822"),
        ("1.1", "text/plain"),
        ("2", "message/rfc822"),
        ("2.1", "text/plain"),
    ]
