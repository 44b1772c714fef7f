import pytest

from mailsvc.imap.mailboxes import is_selectable, mailbox_role
from mailsvc.imap.wire import ListedMailbox, SelectedState
from mailsvc.sync.plan import (
    Candidate,
    LocalMailbox,
    StoredMailbox,
    SyncOptions,
    batches,
    deleted_uids,
    limit_initial,
    plan_mailbox,
    reconcile_mailboxes,
)


def listed(name: str, *attributes: str, delimiter: str = ".") -> ListedMailbox:
    return ListedMailbox(name, name, delimiter, frozenset(attributes))


@pytest.mark.parametrize(
    ("mailbox", "role"),
    [
        (listed("INBOX"), "inbox"),
        (listed("Sent Items", "\\Sent"), "sent"),
        (listed("Whatever", "\\Junk"), "junk"),
        (listed("[Gmail].All Mail", "\\All"), "all"),
        (listed("Deleted Items"), "trash"),
        (listed("INBOX.Drafts"), "drafts"),
        (listed("Gesendete Objekte"), "sent"),
        (listed("Projects"), None),
    ],
)
def test_mailbox_roles_from_attributes_then_names(mailbox: ListedMailbox, role: str) -> None:
    assert mailbox_role(mailbox) == role


def test_noselect_mailboxes_are_not_selectable() -> None:
    assert not is_selectable(listed("[Gmail]", "\\Noselect", "\\HasChildren"))
    assert is_selectable(listed("INBOX"))


def test_options_match_names_and_roles() -> None:
    options = SyncOptions(exclude_mailboxes=frozenset({"junk", "Old"}))
    assert not options.wants(listed("Spam", "\\Junk"), "junk")
    assert not options.wants(listed("Old"), None)
    assert options.wants(listed("INBOX"), "inbox")
    only_inbox = SyncOptions(include_mailboxes=frozenset({"inbox"}))
    assert only_inbox.wants(listed("INBOX"), "inbox")
    assert not only_inbox.wants(listed("Archive"), "archive")


def test_reconcile_detects_created_deleted_and_renamed() -> None:
    stored = [StoredMailbox("INBOX", 1), StoredMailbox("Old name", 7), StoredMailbox("Gone", 9)]
    server = [listed("INBOX"), listed("New name"), listed("Brand new")]
    changes = reconcile_mailboxes(stored, server, {"New name": 7, "Brand new": 11})
    assert [m.name for m in changes.created] == ["Brand new"]
    assert changes.deleted == ["Gone"]
    assert [(old, new.name) for old, new in changes.renamed] == [("Old name", "New name")]
    assert [m.name for m in changes.kept] == ["INBOX"]


def selected(**values: object) -> SelectedState:
    state = SelectedState()
    for key, value in values.items():
        setattr(state, key, value)
    return state


def test_first_sync_fetches_everything() -> None:
    plan = plan_mailbox(
        LocalMailbox(None, None, None, 0),
        selected(exists=3, uidvalidity=5, uidnext=4),
        qresync=True,
    )
    assert plan.initial
    assert plan.fetch_from_uid == 1
    assert not plan.reset


def test_uidvalidity_change_resets() -> None:
    plan = plan_mailbox(
        LocalMailbox(5, 10, 100, 9), selected(exists=2, uidvalidity=6, uidnext=3), qresync=True
    )
    assert plan.reset
    assert plan.fetch_from_uid == 1


def test_nothing_changed_means_nothing_to_do() -> None:
    plan = plan_mailbox(
        LocalMailbox(5, 10, 100, 9),
        selected(exists=9, uidvalidity=5, uidnext=10, highestmodseq=100),
        qresync=False,
    )
    assert plan.idle


def test_condstore_fetches_changes_since_the_stored_modseq() -> None:
    plan = plan_mailbox(
        LocalMailbox(5, 10, 100, 9),
        selected(exists=10, uidvalidity=5, uidnext=11, highestmodseq=120),
        qresync=False,
    )
    assert plan.fetch_from_uid == 10
    assert plan.flags_changed_since == 100
    assert not plan.search_for_deletions


def test_without_condstore_flags_are_listed_and_expunges_found_by_count() -> None:
    plan = plan_mailbox(
        LocalMailbox(5, 10, None, 9), selected(exists=8, uidvalidity=5, uidnext=10), qresync=False
    )
    assert plan.full_flag_scan
    assert plan.search_for_deletions


def test_qresync_takes_vanished_from_select() -> None:
    plan = plan_mailbox(
        LocalMailbox(5, 10, 100, 9),
        selected(exists=7, uidvalidity=5, uidnext=10, highestmodseq=130, vanished=[3, 4]),
        qresync=True,
    )
    assert plan.vanished == (3, 4)
    assert not plan.search_for_deletions


def test_deleted_uids_only_below_the_listing() -> None:
    assert deleted_uids([1, 2, 3, 10], [1, 3], below=5) == [2]


def test_batches_respect_count_and_bytes() -> None:
    candidates = [Candidate(uid, size) for uid, size in enumerate([10, 10, 10, 100, 10], 1)]
    groups = batches(candidates, max_count=2, max_bytes=50)
    assert [[c.uid for c in g] for g in groups] == [[1, 2], [3], [4], [5]]


def test_limit_initial_keeps_the_newest() -> None:
    assert limit_initial([5, 1, 3, 9], newest=2) == [5, 9]
    assert limit_initial([5, 1], newest=None) == [1, 5]
    assert limit_initial([5, 1], newest=0) == []
