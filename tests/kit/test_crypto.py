import os

import pytest

from mailsvc.kit.crypto import SecretBox, SecretDecryptionError, associated_data


def test_sealed_secret_opens_with_the_same_context() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("hunter2", context=associated_data("t1", "acc1", "imap"))
    assert "hunter2" not in sealed
    assert box.open(sealed, context=associated_data("t1", "acc1", "imap")) == "hunter2"


@pytest.mark.parametrize(
    "other",
    [("t2", "acc1", "imap"), ("t1", "acc2", "imap"), ("t1", "acc1", "smtp")],
)
def test_sealed_secret_is_bound_to_tenant_account_and_purpose(other: tuple[str, ...]) -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("hunter2", context=associated_data("t1", "acc1", "imap"))
    with pytest.raises(SecretDecryptionError):
        box.open(sealed, context=associated_data(*other))


def test_associated_data_parts_cannot_be_shifted() -> None:
    assert associated_data("ab", "c") != associated_data("a", "bc")


def test_tampered_ciphertext_is_rejected() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("hunter2", context=b"ctx")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretDecryptionError):
        box.open(flipped, context=b"ctx")


def test_old_keys_still_open_and_are_flagged_for_rotation() -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    sealed_with_old = SecretBox(old_key).seal("s3cret", context=b"ctx")
    rotated_box = SecretBox(new_key, [old_key])
    assert rotated_box.open(sealed_with_old, context=b"ctx") == "s3cret"
    assert rotated_box.needs_rotation(sealed_with_old)
    assert not rotated_box.needs_rotation(rotated_box.seal("s3cret", context=b"ctx"))


def test_unknown_key_is_a_clear_error() -> None:
    sealed = SecretBox(os.urandom(32)).seal("x", context=b"ctx")
    with pytest.raises(SecretDecryptionError, match="no key with id"):
        SecretBox(os.urandom(32)).open(sealed, context=b"ctx")
