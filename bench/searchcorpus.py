"""A deterministic mailbox for the search and API benchmarks, and the queries run on it.

`generate_mailbox(count, seed)` builds `count` messages of one INBOX as plain records
(`CorpusMessage`): what mailsvc stores for a message (subject, addresses, dates, flags,
text body, attachment metadata, thread) plus what an RFC 822 rendering of it needs.
`render(message)` turns a record into the raw message a mail store would hold, so
the same mailbox can be loaded into PostgreSQL row by row and written to a Maildir
for notmuch. `build_queries(mailbox, seed)` derives 200 varied Gmail-style searches
from the mailbox's own vocabulary, each with its notmuch translation.

What the mailbox looks like (bench/corpus.py is the sync benchmark's MIME torture
corpus; this one is about words, not MIME):

- languages: ~76 % English, ~10 % German, ~7 % Russian, ~7 % Chinese; a thread stays
  in the language it started in;
- words: Zipf-Mandelbrot distributed, so the commonest content words are in half the
  messages or more and a long tail (~20,000 made-up customer, product and place names,
  and ticket numbers) whose rarest members are in a handful each; half the sentences
  come from a per-language pool (mail repeats itself: templates, stock phrases), half
  are fresh;
- people: 288 correspondents (English, German, Russian and Chinese names, ASCII
  addresses at 40 organisations), who write with Zipf-distributed frequency;
- dates: spread evenly over three years (2022-01-03 to 2025-01-02, whatever `count`:
  at 100,000 messages one every ~16 minutes); INTERNALDATE a few seconds after the
  Date header, so both orders agree;
- threads: ~30 % of the messages reply to a recent one (`Re:` subject, In-Reply-To /
  References, a short quote of the message they answer);
- flags: ~87 % read (the newest 300 mostly unread), ~4 % flagged, ~9 % answered;
  ~15 % carry one or two attachments: metadata in the database, a small stub part
  (a few hundred bytes) in the raw message, so the Maildir stays small (100,000
  messages: ~210 MB).

Bodies are short (median ~850 characters with greeting, signature and quote) for
the same reason. Run as a script to print the statistics of 10,000 messages and
every tenth query.
"""

# ruff: noqa: RUF001 - Cyrillic letters and CJK punctuation are this corpus' text

from __future__ import annotations

import base64
import itertools
import quopri
import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime

CRLF = "\r\n"
OWNER_NAME = "Robin Bench"
OWNER_ADDRESS = "robin@bench.example"
SPAN_START = datetime(2022, 1, 3, 7, 0, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
LANGUAGES = (("en", 76), ("de", 10), ("ru", 7), ("zh", 7))

# -- vocabulary -------------------------------------------------------------------------

# English, most frequent first (the rank decides the Zipf weight).
_EN_CONTENT = """
meeting project please review update team report thanks today week call budget
schedule customer order invoice attached draft release deadline question time
tomorrow monday friday agenda notes plan account payment shipping contract proposal
office server client data issue version feedback document changes details support
quarter sales numbers status launch product design testing workshop training
presentation slides travel flight hotel conference partner vendor pricing quote
approval manager director board minutes summary action items follow deployment
migration database backup outage incident ticket request access password laptop
network security policy compliance audit legal review signature renewal license
subscription trial demo onboarding hiring interview candidate offer salary benefits
holiday vacation leave sick office kitchen parking building lunch dinner coffee
birthday party celebration welcome farewell announcement newsletter webinar survey
results metrics dashboard forecast revenue expenses costs savings discount refund
delivery warehouse inventory stock supplier shipment tracking customs logistics
marketing campaign social website blog article press interview podcast video photo
brochure catalogue print banner event booth venue catering speaker keynote panel
registration tickets invitation reminder deadline extension priority urgent blocker
roadmap milestone sprint backlog estimate scope requirements specification prototype
architecture infrastructure cloud cluster kubernetes container pipeline build tests
coverage refactoring performance latency throughput capacity scaling monitoring
alerts logs errors crash regression hotfix patch upgrade rollback maintenance window
downtime certificate domain firewall vpn router printer scanner monitor keyboard
headphones phone charger cable adapter repair warranty replacement receipt expense
reimbursement mileage taxi train airport visa passport insurance claim doctor
appointment dentist school kids weekend garden apartment lease landlord rent
utilities electricity water heating internet mortgage bank transfer statement tax
return accountant lawyer notary pension savings investment shares dividend
portfolio analyst market competitor acquisition merger strategy vision mission
values culture diversity wellbeing mentoring coaching promotion appraisal objectives
goals targets incentives bonus commission quota pipeline leads prospects renewal
churn retention loyalty complaint escalation resolution satisfaction recommendation
""".split()
_EN_CONTENT_SET = frozenset(_EN_CONTENT)
_EN_FUNCTION = """
the a to of and in for on with is we you i it this that be are will can please our
your at by from as not have has was if all any about so do as soon let me know
""".split()
# Stems for the long tail of proper nouns: customers, products, places, projects.
_SYLLABLES_A = (
    "al bran cor dal el fen gar hal is jor kal lor mar nor or pel quin ros sal tor".split()
)
_SYLLABLES_B = "a e i o u ae ia io".split()
_SYLLABLES_C = "dor fax gen lith mont nex perk rix sand tek vale wick zen ford mere holt".split()
_SYLLABLES_D = ("", "a", "o", "is", "an", "er", "en", "ia")

_DE_WORDS = """
Besprechung Bericht Angebot Rechnung bitte prüfen Anhang Entwurf Termin Kunde
Bestellung Grüße Frage Antwort Größe Übersicht Änderung morgen Woche Vertrag
Tagesordnung Mitarbeiter Zuständigkeit natürlich Lösung möglich Gebühr Projekt
Abteilung Lieferung Zahlung Freigabe Unterlagen Zeitplan Rückmeldung Abstimmung
Vorschlag Budget Quartal Umsatz Kosten Planung Schulung Urlaub Krankmeldung Büro
Besucher Präsentation Unterschrift Kündigung Verlängerung Datenschutz Sicherheit
Störung Wartung Aktualisierung Server Zugang Passwort Netzwerk Drucker Rechner
Reisekosten Abrechnung Steuer Buchhaltung Lager Versand Lieferant Spedition Zoll
Messe Veranstaltung Einladung Anmeldung Erinnerung dringend wichtig erledigt offen
geplant verschoben abgesagt bestätigt Geschäftsführung Vorstand Protokoll Beschluss
Ziele Strategie Wettbewerb Marktanteil Kundenzufriedenheit Beschwerde Reklamation
Gutschrift Mahnung Zahlungsziel Überweisung Konto Bank Versicherung Schaden Gutachten
""".split()
_DE_FUNCTION = "der die das und mit für über von zu im am ist sind wir Sie bitte noch auch".split()

_RU_WORDS = """
встреча отчёт проект счёт пожалуйста посмотрите вложение черновик график клиент
заказ обновление команда выпуск срок спасибо вопрос ответ сервер оплата доставка
завтра офис договор неделя понедельник пятница бюджет квартал продажи совещание
презентация поставщик склад отгрузка накладная акт сверка бухгалтерия налог отпуск
командировка гостиница билеты конференция партнёр предложение согласование подпись
руководитель директор протокол решение задача план стратегия рынок конкурент цена
скидка возврат жалоба претензия гарантия ремонт замена доступ пароль сеть принтер
сбой авария резервная копия миграция база данных тестирование релиз исправление
""".split()
_RU_FUNCTION = "и в на с по для не что это как мы вы от до о".split()

_ZH_WORDS = """
会议 报告 项目 预算 季度 请查看 附件 草稿 日程 客户 订单 发票 更新 团队 发布 截止日期
谢谢 问题 答案 服务器 账户 付款 运输 明天 办公室 合同 提案 议程 笔记 销售 市场 产品
设计 测试 培训 演示 出差 酒店 机票 供应商 仓库 库存 物流 海关 审批 经理 总监 董事会
纪要 总结 行动 部署 迁移 数据库 备份 故障 工单 权限 密码 网络 安全 政策 审计 法务
续约 许可 试用 招聘 面试 候选人 工资 福利 假期 生日 聚会 欢迎 公告 调查 结果 指标
预测 收入 费用 成本 折扣 退款 交付 采购 质量 投诉 满意度 战略 竞争 价格 目标 奖金
""".split()

_PEOPLE_EN_FIRST = """
Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy
Rupert Sybil Trent Victor Walter Wendy Zoe Liam Emma Noah Ava Mason Sophia Lucas
Mia Ethan Harper Logan Ella Jacob Chloe Owen Lily Caleb Nora Isaac Ruby Hannah
""".split()
_PEOPLE_EN_LAST = """
Walker Smith Jones OBrien Miller Taylor Brown Wilson Moore Anderson Thomas Jackson
White Harris Martin Thompson Garcia Martinez Robinson Clark Lewis Lee Hall Allen
Young King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts
""".split()
_PEOPLE_DE = [
    ("Jürgen", "Müller", "juergen", "mueller"),
    ("Björn", "Schäfer", "bjoern", "schaefer"),
    ("Anna", "Weiß", "anna", "weiss"),
    ("Lena", "Groß", "lena", "gross"),
    ("Klaus", "Fischer", "klaus", "fischer"),
    ("Sabine", "Becker", "sabine", "becker"),
    ("Uwe", "Hoffmann", "uwe", "hoffmann"),
    ("Petra", "Schulz", "petra", "schulz"),
    ("Matthias", "Köhler", "matthias", "koehler"),
    ("Katrin", "Wagner", "katrin", "wagner"),
]
_PEOPLE_RU = [
    ("Иван", "Петров", "ivan", "petrov"),
    ("Мария", "Смирнова", "maria", "smirnova"),
    ("Алексей", "Кузнецов", "alexey", "kuznetsov"),
    ("Ольга", "Попова", "olga", "popova"),
    ("Дмитрий", "Соколов", "dmitry", "sokolov"),
    ("Елена", "Лебедева", "elena", "lebedeva"),
    ("Сергей", "Козлов", "sergey", "kozlov"),
    ("Наталья", "Новикова", "natalia", "novikova"),
]
_PEOPLE_ZH = [
    ("伟", "张", "wei", "zhang"),
    ("芳", "王", "fang", "wang"),
    ("娜", "李", "na", "li"),
    ("敏", "刘", "min", "liu"),
    ("静", "陈", "jing", "chen"),
    ("强", "杨", "qiang", "yang"),
    ("磊", "黄", "lei", "huang"),
    ("洋", "赵", "yang", "zhao"),
]
_ORGANISATIONS = [
    f"{stem}.example"
    for stem in (
        "northwind contoso fabrikam initech globex umbrella hooli vandelay acme stark "
        "wayne tyrell cyberdyne soylent massive aperture blackmesa wonka oscorp gringotts "
        "dunder pied hooper monarch octan duff krusty sirius nakatomi yoyodyne "
        "spacely cogswell gekko virtucon weyland dharma rekall bluth sterling"
    ).split()
]
_ATTACHMENTS = (
    ("application/pdf", "invoice-{n}.pdf"),
    ("application/pdf", "report-{q}.pdf"),
    ("image/jpeg", "photo-{n}.jpg"),
    ("image/png", "screenshot-{n}.png"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "figures-{q}.xlsx"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "contract-{n}.docx",
    ),
    ("text/calendar", "invite.ics"),
    ("application/zip", "archive-{n}.zip"),
)


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    address: str
    language: str
    surname_ascii: str
    """The surname as it appears in the address (for `from:` searches)."""


@dataclass(slots=True)
class AttachmentMeta:
    filename: str
    content_type: str
    payload: bytes
    """The stub written into the raw message (the size stored is its decoded size)."""


@dataclass(slots=True)
class CorpusMessage:
    """One message of the mailbox, as mailsvc would store it after a sync."""

    index: int
    id: uuid.UUID
    uid: int
    message_id: str
    in_reply_to: str | None
    references: list[str]
    thread_id: uuid.UUID
    language: str
    subject: str
    sender: Person
    to: list[Person]
    cc: list[Person]
    date: datetime
    zone: timezone
    internal_date: datetime
    flags: list[str]
    text_body: str
    attachments: list[AttachmentMeta] = field(default_factory=list)
    size: int = 0
    """RFC822.SIZE of `render(message)`; set by whoever renders it."""


@dataclass(slots=True)
class Thread:
    id: uuid.UUID
    subject: str
    language: str
    messages: list[CorpusMessage] = field(default_factory=list)


@dataclass(slots=True)
class Mailbox:
    """The generated INBOX: messages oldest first, their threads and correspondents."""

    messages: list[CorpusMessage]
    threads: list[Thread]
    people: list[Person]
    owner: Person
    tail_words: list[str]
    """Proper nouns of the long tail, most frequent first."""


class _Zipf:
    """Draws from `items` with Zipf-Mandelbrot weights 1 / (rank + q) ** s."""

    def __init__(self, items: Sequence[str], *, q: float = 8.0, s: float = 1.05) -> None:
        self.items = list(items)
        self.cumulative = list(itertools.accumulate(1.0 / (r + q) ** s for r in range(len(items))))

    def draw(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.items, cum_weights=self.cumulative, k=k)


def _tail_words(rng: random.Random) -> list[str]:
    """Proper nouns of the long tail (~20,000), in a seeded order: the rank they get.

    Long enough that at 100,000 messages the last ranks are in ten messages or fewer.
    """
    names = {
        (a + b + c + d).capitalize()
        for a in _SYLLABLES_A
        for b in _SYLLABLES_B
        for c in _SYLLABLES_C
        for d in _SYLLABLES_D
    }
    ordered = sorted(names)
    rng.shuffle(ordered)
    return ordered


def _people(rng: random.Random) -> list[Person]:
    people: list[Person] = []
    seen: set[str] = set()

    def add(name: str, local: str, surname: str, language: str) -> None:
        domain = rng.choice(_ORGANISATIONS)
        address = f"{local}@{domain}"
        if address in seen:
            address = f"{local}{len(people)}@{domain}"
        seen.add(address)
        people.append(Person(name, address, language, surname))

    pairs = [(f, s) for f in _PEOPLE_EN_FIRST for s in _PEOPLE_EN_LAST]
    for first, last in rng.sample(pairs, 236):
        display = "Dave O'Brien" if (first, last) == ("Dave", "OBrien") else f"{first} {last}"
        add(display, f"{first.lower()}.{last.lower()}", last.lower(), "en")
    for first, last, first_ascii, last_ascii in _PEOPLE_DE * 2:
        add(f"{first} {last}", f"{first_ascii}.{last_ascii}", last_ascii, "de")
    for first, last, first_ascii, last_ascii in _PEOPLE_RU * 2:
        add(f"{first} {last}", f"{first_ascii}.{last_ascii}", last_ascii, "ru")
    for first, last, first_ascii, last_ascii in _PEOPLE_ZH * 2:
        add(f"{last}{first}", f"{first_ascii}.{last_ascii}", last_ascii, "zh")
    rng.shuffle(people)
    return people


class _Writer:
    """Sentences, subjects and bodies per language."""

    def __init__(self, rng: random.Random, tail: list[str]) -> None:
        self.rng = rng
        self.en_common = _Zipf(_EN_CONTENT, q=6.0, s=1.0)
        # The long tail: real words first, then proper nouns, one Zipf over all.
        self.en_all = _Zipf([*_EN_CONTENT, *tail], q=6.0, s=1.0)
        self.de = _Zipf(_DE_WORDS, q=4.0, s=1.0)
        self.ru = _Zipf(_RU_WORDS, q=4.0, s=1.0)
        self.zh = _Zipf(_ZH_WORDS, q=4.0, s=1.0)
        self.pools = {language: [self._fresh(language, pool=True) for _ in range(1500)]
                      for language in ("en", "de", "ru", "zh")}  # fmt: skip

    def _fresh(self, language: str, *, pool: bool = False) -> str:
        rng = self.rng
        length = rng.randint(5, 14)
        if language == "zh":
            words = self.zh.draw(rng, rng.randint(3, 8))
            return "".join(words) + rng.choice("。。。！？")
        if language == "en":
            content = (self.en_common if pool else self.en_all).draw(rng, length)
            function = _EN_FUNCTION
        elif language == "de":
            content, function = self.de.draw(rng, length), _DE_FUNCTION
        else:
            content, function = self.ru.draw(rng, length), _RU_FUNCTION
        words = [w if rng.random() < 0.62 else rng.choice(function) for w in content]
        if language == "en" and not pool and rng.random() < 0.08:
            words.insert(rng.randint(0, len(words)), f"#{rng.randint(10_000, 99_999)}")
        sentence = " ".join(words)
        return sentence[:1].upper() + sentence[1:] + rng.choice("....?!")

    def sentence(self, language: str) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(self.pools[language])
        return self._fresh(language)

    def subject(self, language: str) -> str:
        rng = self.rng
        if language == "en" and rng.random() < 0.15:
            number = rng.randint(10_000, 99_999)
            word = self.en_common.draw(rng, 1)[0]
            return rng.choice(
                (
                    f"Invoice {number}",
                    f"Order {number} shipped",
                    f"Ticket {number}: {word}",
                    f"{word.capitalize()} for Q{rng.randint(1, 4)}",
                )
            )
        if language == "zh":
            return "".join(self.zh.draw(rng, rng.randint(2, 4)))
        draw = {"en": self.en_all, "de": self.de, "ru": self.ru}[language]
        subject = " ".join(draw.draw(rng, rng.randint(2, 6)))
        return subject[:1].upper() + subject[1:]

    def body(self, language: str, *, greeting: str, signature: str) -> str:
        rng = self.rng
        size = int(min(6_000, max(120, rng.lognormvariate(6.3, 0.8))))  # median ~550 chars
        joiner = "" if language == "zh" else " "
        paragraphs: list[str] = [greeting]
        total = 0
        while total < size:
            paragraph = joiner.join(self.sentence(language) for _ in range(rng.randint(1, 5)))
            paragraphs.append(paragraph)
            total += len(paragraph) + 2
        paragraphs.append(signature)
        return "\n\n".join(paragraphs)


_GREETINGS = {
    "en": ("Hi {first},", "Hello {first},", "Dear {first},", "{first},", "Hi all,"),
    "de": ("Hallo {first},", "Liebe Grüße vorab, {first},", "Guten Tag,"),
    "ru": ("Привет, {first}!", "Добрый день, {first}!", "Коллеги,"),
    "zh": ("{first}你好，", "各位好，", "您好，"),
}
_CLOSINGS = {
    "en": ("Best,", "Thanks,", "Cheers,", "Kind regards,", "Best regards,"),
    "de": ("Viele Grüße", "Mit freundlichen Grüßen", "Beste Grüße"),
    "ru": ("С уважением,", "Спасибо,", "Всего доброго,"),
    "zh": ("谢谢！", "此致敬礼", "祝好"),
}


def _first_name(person: Person) -> str:
    return person.name.split()[0] if " " in person.name else person.name[-1:]


def _uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    """A version 7 UUID for `moment` with seeded random bits: time-ordered ids, as
    mailsvc's own uuid7 makes, but the same on every run."""
    unix_ms = int(moment.timestamp() * 1000)
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    return uuid.UUID(int=value)


def generate_mailbox(count: int, seed: int) -> Mailbox:
    """The INBOX of `count` messages; the same arguments always give the same mailbox."""
    rng = random.Random(seed)
    tail = _tail_words(rng)
    people = _people(rng)
    owner = Person(OWNER_NAME, OWNER_ADDRESS, "en", "bench")
    by_language: dict[str, list[Person]] = {}
    for person in people:
        by_language.setdefault(person.language, []).append(person)
    senders = {language: _Zipf([p.address for p in group], q=2.0, s=0.9)
               for language, group in by_language.items()}  # fmt: skip
    address_to_person = {p.address: p for p in people}
    writer = _Writer(rng, tail)
    languages = [language for language, _ in LANGUAGES]
    language_weights = [weight for _, weight in LANGUAGES]
    step = SPAN / max(count, 1)
    zones = [timezone(timedelta(hours=h)) for h in (-8, -5, 0, 1, 2, 3, 8)]

    messages: list[CorpusMessage] = []
    threads: list[Thread] = []
    thread_by_id: dict[uuid.UUID, Thread] = {}
    for index in range(count):
        moment = SPAN_START + step * (index + rng.random() * 0.8)
        moment = moment.replace(microsecond=0)
        parent: CorpusMessage | None = None
        if messages and rng.random() < 0.30:
            parent = rng.choice(messages[-200:])
        if parent is not None:
            thread = thread_by_id[parent.thread_id]
            language = thread.language
            subject = (
                thread.subject if thread.subject.startswith("Re: ") else "Re: " + thread.subject
            )
        else:
            language = rng.choices(languages, language_weights)[0]
            subject = writer.subject(language)
            thread = Thread(_uuid7_at(moment, rng), subject, language)
            threads.append(thread)
            thread_by_id[thread.id] = thread
        sender = address_to_person[senders[language].draw(rng, 1)[0]]
        if parent is not None and rng.random() < 0.6 and parent.sender.address != sender.address:
            recipients = [parent.sender]
        else:
            recipients = [owner]
        while rng.random() < 0.35 and len(recipients) < 4:
            recipients.append(rng.choice(by_language[language] if rng.random() < 0.7 else people))
        cc = [rng.choice(people) for _ in range(rng.randint(1, 2))] if rng.random() < 0.25 else []
        if owner not in recipients and owner not in cc:
            cc.append(owner)
        greeting = rng.choice(_GREETINGS[language]).format(first=_first_name(recipients[0]))
        signature = f"{rng.choice(_CLOSINGS[language])}\n{sender.name}"
        text = writer.body(language, greeting=greeting, signature=signature)
        references: list[str] = []
        if parent is not None:
            quoted = "\n".join(f"> {line}" for line in parent.text_body[:300].split("\n"))
            attribution = f"On {format_datetime(parent.date)}, {parent.sender.name} wrote:"
            text = f"{text}\n\n{attribution}\n{quoted}"
            references = [*parent.references, parent.message_id][-20:]
        attachments: list[AttachmentMeta] = []
        if rng.random() < 0.15:
            for _ in range(1 if rng.random() < 0.75 else 2):
                content_type, pattern = rng.choice(_ATTACHMENTS)
                filename = pattern.format(n=rng.randint(10_000, 99_999), q=f"q{rng.randint(1, 4)}")
                payload = rng.randbytes(rng.randint(200, 1_500))
                attachments.append(AttachmentMeta(filename, content_type, payload))
        age = count - index
        unread = rng.random() < (0.6 if age <= 300 else 0.12)
        flags = [] if unread else ["\\Seen"]
        if rng.random() < 0.04:
            flags.append("\\Flagged")
        if not unread and rng.random() < 0.10:
            flags.append("\\Answered")
        message = CorpusMessage(
            index=index,
            id=_uuid7_at(moment, rng),
            uid=index + 1,
            message_id=f"{index}.{rng.getrandbits(48):012x}@{sender.address.split('@')[1]}",
            in_reply_to=parent.message_id if parent else None,
            references=references,
            thread_id=thread.id,
            language=language,
            subject=subject,
            sender=sender,
            to=recipients,
            cc=cc,
            date=moment,
            zone=rng.choice(zones),
            internal_date=moment + timedelta(seconds=rng.randint(2, 40)),
            flags=sorted(flags),
            text_body=text,
            attachments=attachments,
        )
        thread.messages.append(message)
        messages.append(message)
    return Mailbox(messages=messages, threads=threads, people=people, owner=owner, tail_words=tail)


# -- RFC 822 ------------------------------------------------------------------------------


def _encoded_words(text: str) -> str:
    """RFC 2047 B-encoding in words of at most 75 characters, for non-ASCII headers."""
    if text.isascii():
        return text
    words = []
    chunk = ""
    for character in text:
        if len((chunk + character).encode()) > 42:
            words.append(chunk)
            chunk = ""
        chunk += character
    words.append(chunk)
    return f"{CRLF} ".join(
        f"=?utf-8?b?{base64.b64encode(word.encode()).decode()}?=" for word in words
    )


def _mailbox(person: Person) -> str:
    if person.name.isascii():
        name = f'"{person.name}"' if any(c in person.name for c in "'.,") else person.name
    else:
        name = _encoded_words(person.name)
    return f"{name} <{person.address}>"


def render(message: CorpusMessage) -> bytes:
    """The message as RFC 5322 bytes with CRLF line ends: text/plain, or
    multipart/mixed with the attachment stubs; 7bit for ASCII text, else
    quoted-printable (German) or base64 (Russian, Chinese) UTF-8."""
    headers = [
        f"Return-Path: <{message.sender.address}>",
        f"Message-ID: <{message.message_id}>",
        f"Date: {format_datetime(message.date.astimezone(message.zone))}",
        f"From: {_mailbox(message.sender)}",
        "To: " + f",{CRLF} ".join(_mailbox(p) for p in message.to),
    ]
    if message.cc:
        headers.append("Cc: " + f",{CRLF} ".join(_mailbox(p) for p in message.cc))
    headers.append(f"Subject: {_encoded_words(message.subject)}")
    if message.in_reply_to:
        headers.append(f"In-Reply-To: <{message.in_reply_to}>")
        headers.append("References: " + f"{CRLF} ".join(f"<{r}>" for r in message.references))
    headers.append("MIME-Version: 1.0")
    text = message.text_body.replace("\n", CRLF)
    if text.isascii():
        cte, body = "7bit", _wrap_ascii(text)
    elif message.language == "de":
        cte, body = "quoted-printable", _quoted_printable(text)
    else:
        cte = "base64"
        encoded = base64.b64encode(text.encode()).decode()
        body = CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    charset = "us-ascii" if cte == "7bit" else "utf-8"
    text_part = [
        f'Content-Type: text/plain; charset="{charset}"',
        f"Content-Transfer-Encoding: {cte}",
        "",
        body,
    ]
    if not message.attachments:
        return (CRLF.join([*headers, *text_part]) + CRLF).encode()
    boundary = f"=_bench_{message.index:08d}"
    lines = [
        *headers,
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        "This is a multi-part message in MIME format.",
        f"--{boundary}",
        *text_part,
    ]
    for attachment in message.attachments:
        encoded = base64.b64encode(attachment.payload).decode()
        lines += [
            f"--{boundary}",
            f'Content-Type: {attachment.content_type}; name="{attachment.filename}"',
            f'Content-Disposition: attachment; filename="{attachment.filename}"',
            "Content-Transfer-Encoding: base64",
            "",
            *(encoded[i : i + 76] for i in range(0, len(encoded), 76)),
        ]
    lines.append(f"--{boundary}--")
    return (CRLF.join(lines) + CRLF).encode()


def _wrap_ascii(text: str, width: int = 76) -> str:
    out: list[str] = []
    for line in text.split(CRLF):
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = width if cut <= 0 else cut
            out.append(line[:cut])
            line = line[cut:].lstrip(" ")
        out.append(line)
    return CRLF.join(out)


def _quoted_printable(text: str) -> str:
    raw = quopri.encodestring(text.replace(CRLF, "\n").encode())
    return raw.decode("ascii").replace("\n", CRLF)


# -- queries --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    kind: str
    q: str
    """As typed into mailsvc (`GET /api/messages?q=`)."""
    notmuch: str
    """The same search in notmuch's syntax."""


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
# How many queries of each kind; 200 in all.
QUERY_MIX = (
    ("common word", 24),
    ("rare word", 24),
    ("two words", 22),
    ("phrase", 16),
    ("or", 14),
    ("exclusion", 14),
    ("from", 20),
    ("subject", 14),
    ("date range", 14),
    ("has:attachment", 10),
    ("is:unread", 6),
    ("german", 8),
    ("russian", 7),
    ("chinese", 7),
)


def document_frequencies(mailbox: Mailbox) -> Counter[str]:
    """In how many messages each lower-cased word (subject or body) appears."""
    frequencies: Counter[str] = Counter()
    for message in mailbox.messages:
        frequencies.update(set(_WORD.findall(f"{message.subject} {message.text_body}".lower())))
    return frequencies


def _epoch(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())


class _QueryMaker:
    """Pools of words, people and dates to draw the queries of each kind from.

    Word choice goes by the document frequencies of this very mailbox, so smaller
    mailboxes get queries of the same character: common words are in 5-40 % of the
    messages, mid-frequency ones in 0.2-5 %, rare ones in at most 0.01 % (at least
    one message, at most 10 of 100,000).
    """

    def __init__(self, mailbox: Mailbox, rng: random.Random) -> None:
        self.rng = rng
        self.mailbox = mailbox
        total = max(len(mailbox.messages), 1)
        df = document_frequencies(mailbox)
        self.df = df
        content = [w for w in _EN_CONTENT if df[w]]

        def between(low: float, high: float) -> list[str]:
            return [w for w in content if low * total <= df[w] <= high * total]

        self.common = between(0.05, 0.40) or content[:20]
        self.middle = between(0.002, 0.05) or content[20:80]
        self.words = self.common + self.middle
        tail = [w.lower() for w in mailbox.tail_words]
        rare = sorted(w for w in tail if 1 <= df[w] <= max(3, 0.0001 * total))
        # Too few messages for any to be that rare: the rarest that occur at all.
        self.rare = rare or sorted((w for w in tail if df[w]), key=lambda w: df[w])[:50]
        self.numbers = sorted(w for w in df if w.isdigit() and len(w) == 5 and df[w] <= 3)
        self.languages = {
            "german": [w.lower() for w in _DE_WORDS if df[w.lower()]],
            "russian": [w for w in _RU_WORDS if df[w]],
            # Chinese runs are one token to the counter: take the words as written.
            "chinese": list(_ZH_WORDS),
        }
        self.english = [m for m in mailbox.messages if m.language == "en"] or mailbox.messages
        self.first_day = mailbox.messages[0].date.date()
        self.days = max((mailbox.messages[-1].date.date() - self.first_day).days, 2)

    def phrase(self) -> str:
        """Two or three consecutive words of an English body, one a content word."""
        rng = self.rng
        while True:
            body = rng.choice(self.english).text_body
            sentences = [s for s in re.split(r"[.?!]\s*", body) if " " in s]
            if not sentences:
                continue
            words = _WORD.findall(rng.choice(sentences).lower())
            length = rng.choice((2, 2, 3))
            if len(words) < length:
                continue
            start = rng.randint(0, len(words) - length)
            chunk = words[start : start + length]
            if len(set(chunk)) == length and any(w in _EN_CONTENT_SET for w in chunk):
                return " ".join(chunk)

    def dates(self) -> tuple[str, str]:
        """A range of 1 to 90 days: (mailsvc's after:/before:, notmuch's date:)."""
        start = self.first_day + timedelta(days=self.rng.randint(0, self.days - 1))
        end = start + timedelta(days=self.rng.choice((1, 7, 14, 30, 90)))
        # before: is exclusive, notmuch's range inclusive: end one second earlier.
        return (
            f"after:{start:%Y/%m/%d} before:{end:%Y/%m/%d}",
            f"date:@{_epoch(start)}..@{_epoch(end) - 1}",
        )

    def make(self, kind: str) -> tuple[str, str]:
        """One query of `kind`: (mailsvc syntax, notmuch syntax)."""
        rng = self.rng
        match kind:
            case "common word":
                word = rng.choice(self.common)
                return word, word
            case "rare word":
                pool = self.numbers if self.numbers and rng.random() < 0.25 else self.rare
                word = rng.choice(pool)
                return word, word
            case "two words":
                if rng.random() < 0.5:
                    a, b = rng.sample(self.words, 2)
                else:
                    a, b = rng.choice(self.common), rng.choice(self.middle)
                return f"{a} {b}", f"{a} AND {b}"
            case "phrase":
                text = self.phrase()
                return f'"{text}"', f'"{text}"'
            case "or":
                a = rng.choice(self.middle)
                b = rng.choice(self.rare if rng.random() < 0.5 else self.middle)
                return f"{a} OR {b}", f"{a} OR {b}"
            case "exclusion":
                a, b = rng.choice(self.words), rng.choice(self.common)
                if a == b:
                    b = rng.choice(self.middle)
                return f"{a} -{b}", f"{a} AND NOT {b}"
            case "from":
                person = rng.choice(self.mailbox.people[:150])
                roll = rng.random()
                if roll < 0.5:
                    return f"from:{person.address}", f"from:{person.address}"
                if roll < 0.75:
                    word = rng.choice(self.common)
                    return (
                        f"from:{person.surname_ascii} {word}",
                        f"from:{person.surname_ascii} AND {word}",
                    )
                return f"from:{person.surname_ascii}", f"from:{person.surname_ascii}"
            case "subject":
                word = rng.choice(self.words)
                return f"subject:{word}", f"subject:{word}"
            case "date range":
                q, notmuch = self.dates()
                if rng.random() < 0.5:
                    word = rng.choice(self.words)
                    return f"{word} {q}", f"{word} AND {notmuch}"
                return q, notmuch
            case "has:attachment":
                if rng.random() < 0.3:
                    q, notmuch = self.dates()
                    return f"has:attachment {q}", f"tag:attachment AND {notmuch}"
                word = rng.choice(self.words)
                return f"{word} has:attachment", f"{word} AND tag:attachment"
            case "is:unread":
                word = rng.choice(self.words)
                return f"is:unread {word}", f"tag:unread AND {word}"
            case "german" | "russian" | "chinese":
                pool = self.languages[kind]
                if kind != "chinese" and rng.random() < 0.3:
                    a, b = rng.sample(pool[:40], 2)
                    return f"{a} {b}", f"{a} AND {b}"
                word = rng.choice(pool)
                return word, word
        raise ValueError(f"unknown query kind {kind!r}")


def build_queries(mailbox: Mailbox, seed: int) -> list[Query]:
    """200 distinct searches over `mailbox`'s vocabulary (`QUERY_MIX`), with their
    notmuch translations; the same mailbox and seed always give the same queries."""
    maker = _QueryMaker(mailbox, random.Random(seed * 7919 + 1))
    queries: list[Query] = []
    seen: set[str] = set()
    for kind, how_many in QUERY_MIX:
        made = attempts = 0
        while made < how_many and attempts < 50 * how_many:
            attempts += 1
            q, notmuch = maker.make(kind)
            if q not in seen:
                seen.add(q)
                queries.append(Query(kind, q, notmuch))
                made += 1
    return queries


def rows_of(messages: Sequence[CorpusMessage]) -> Iterator[CorpusMessage]:
    """`messages` with `size` filled (rendering each one), for loaders that need no file."""
    for message in messages:
        if not message.size:
            message.size = len(render(message))
        yield message


if __name__ == "__main__":
    import time

    started = time.perf_counter()
    box = generate_mailbox(10_000, seed=1)
    generated = time.perf_counter() - started
    sizes = sorted(len(render(m)) for m in box.messages)
    languages = Counter(m.language for m in box.messages)
    unread = sum(1 for m in box.messages if "\\Seen" not in m.flags)
    print(
        f"{len(sizes):,} messages in {generated:.1f} s, {len(box.threads):,} threads, "
        f"{sum(sizes) / 1e6:.1f} MB raw (median {sizes[len(sizes) // 2]:,} B, "
        f"max {sizes[-1]:,} B); languages {dict(languages)}; "
        f"{sum(1 for m in box.messages if m.attachments):,} with attachments, "
        f"{unread:,} unread"
    )
    for query in build_queries(box, seed=1)[::10]:
        print(f"  {query.kind:>15}: {query.q:<50} | {query.notmuch}")
