"""The reply text alone: quoted history and signatures removed, never an exception."""

from __future__ import annotations

import time

import pytest

from mailsvc.mime import reply_text as reply_text_module
from mailsvc.mime.reply_text import reply_text


def test_an_english_reply_loses_the_quote_under_on_wrote() -> None:
    body = (
        "Sounds good, see you then.\n"
        "\n"
        "On Mon, Jan 6, 2025 at 10:00 AM Alice Example <alice@example.com> wrote:\n"
        "> Shall we meet at noon?\n"
        "> Alice\n"
    )
    assert reply_text(body) == "Sounds good, see you then."


def test_a_bottom_quote_without_a_header_is_dropped() -> None:
    assert reply_text("Sounds good.\n\n> Can we meet?\n>\n> Bob\n\n") == "Sounds good."


def test_an_outlook_original_message_block_is_dropped() -> None:
    body = (
        "Approved.\r\n"
        "\r\n"
        "-----Original Message-----\r\n"
        "From: Bob <bob@example.com>\r\n"
        "Sent: Monday, January 6, 2025 10:00 AM\r\n"
        "To: Alice <alice@example.com>\r\n"
        "Subject: Budget\r\n"
        "\r\n"
        "Please approve the budget.\r\n"
    )
    assert reply_text(body) == "Approved."


def test_an_outlook_header_block_alone_starts_the_history() -> None:
    body = (
        "Approved.\n\n"
        "From: Bob <bob@example.com>\n"
        "Sent: Monday, January 6, 2025 10:00 AM\n"
        "To: Alice <alice@example.com>\n"
        "Subject: Budget\n\n"
        "Please approve the budget.\n"
    )
    assert reply_text(body) == "Approved."


def test_a_german_reply_loses_the_quote_under_am_schrieb() -> None:
    body = (
        "Passt, danke!\n\n"
        "Am Mo., 6. Jan. 2025 um 10:00 Uhr schrieb Bob Beispiel <bob@example.de>:\n"
        "> Passt dir Montag?\n"
    )
    assert reply_text(body) == "Passt, danke!"


def test_a_french_reply_loses_the_quote_under_a_ecrit() -> None:
    body = "D'accord.\n\nLe lun. 6 janv. 2025 à 10:00, Bob <bob@example.fr> a écrit :\n> Salut\n"
    assert reply_text(body) == "D'accord."


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nAlice Example\nACME Corp, Springfield\n+1 555 0100",
        "Sent from my iPhone",
        "Best regards,\nAlice",
        "Mit freundlichen Grüßen\nAlice",
    ],
)
def test_the_signature_is_dropped(signature: str) -> None:
    assert reply_text(f"See the attached plan.\n\n{signature}\n") == "See the attached plan."


def test_a_sentence_that_opens_like_a_sign_off_stays() -> None:
    body = "Hi Bob,\n\nThanks, that works for me. See you Monday.\n\nAlice\n-- \nAlice Example\n"
    assert reply_text(body) == "Hi Bob,\n\nThanks, that works for me. See you Monday.\n\nAlice"


def test_a_message_without_a_quote_comes_back_with_its_indentation() -> None:
    body = (
        "Hello,\r\n\r\n"
        "the script fails here:\r\n"
        "    for item in items:\r\n"
        "        process(item)\r\n"
        "- one cause\r\n"
        "- another\r\n"
        "Take care of it before Friday.\r\n"
        "/home/alice is full, too.\r\n"
    )
    assert reply_text(body) == body.replace("\r\n", "\n").strip()


def test_inline_answers_between_quotes_are_kept() -> None:
    body = "> Can you come?\nYes.\n> At noon?\nBetter at one.\n"
    assert reply_text(body) == body.strip()


@pytest.mark.parametrize(
    "body",
    [
        "On Mon, Jan 6, 2025 at 10:00 AM Bob <bob@example.com> wrote:\n> Only the quote\n",
        "> Only the quote\n> and more of it\n",
        "-- \nAlice Example",
    ],
)
def test_a_message_with_nothing_new_comes_back_whole(body: str) -> None:
    result = reply_text(body)
    assert result is not None
    assert "Only the quote" in result or "Alice Example" in result


@pytest.mark.parametrize("body", [None, "", "  \r\n\n\t "])
def test_no_text_gives_none(body: str | None) -> None:
    assert reply_text(body) is None


def test_languages_outside_the_defaults_are_asked_for() -> None:
    body = "Tak for sidst.\n\nDen 6. jan. 2025 kl. 10.00 skrev Bob <bob@example.dk>:\n> Hej\n"
    assert reply_text(body, languages=("da",)) == "Tak for sidst."
    # The Danish sign-off "Tak" would cut English at "Taking"; the defaults leave it out.
    english = "Hi,\n\nTaking the 9:00 train, see you there\nBob"
    assert reply_text(english) == english
    assert reply_text(english, languages=("da",)) == "Hi,"


def test_a_library_failure_gives_the_stripped_body(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**options: object) -> None:
        raise RecursionError("regex engine gave up")

    monkeypatch.setattr(reply_text_module, "EmailMessage", broken)
    assert reply_text("  Hello\n> quoted\n") == "Hello\n> quoted"


def test_a_long_message_without_a_quote_comes_back_whole() -> None:
    body = "\n".join(f"line {number} of a very long message" for number in range(50_000))
    assert reply_text(body) == body


def test_a_quote_after_a_long_reply_is_still_found() -> None:
    new_text = "\n".join(f"point {number}" for number in range(1_000))
    body = f"{new_text}\n\nOn Mon, Jan 6, 2025 at 10:00 AM Bob <b@example.com> wrote:\n> old\n"
    assert reply_text(body) == new_text


@pytest.mark.parametrize(
    "body",
    [
        "a" + "\n" * 200_000 + "b",
        "x" + " " * 400_000 + "x",
        "x" + "\t \u00a0" * 100_000 + "x",
        "Le a écrit " * 50_000,
        "> quoted line\n" * 300_000,
        "From: x\n" * 100_000,
        "On " + "x " * 100_000 + "\n",
    ],
    ids=lambda body: repr(body[:16]),
)
def test_hostile_text_costs_about_linear_time(body: str) -> None:
    start = time.perf_counter()
    assert reply_text(body)
    # The library alone takes from seconds to hours on each of these.
    assert time.perf_counter() - start < 3.0
