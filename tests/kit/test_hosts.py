import pytest

from mailsvc.kit.hosts import HostNotAllowedError, ensure_public_host


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1",
     "169.254.169.254", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1"],
)  # fmt: skip
async def test_private_loopback_and_link_local_hosts_are_refused(host: str) -> None:
    with pytest.raises(HostNotAllowedError, match="ALLOW_PRIVATE_HOSTS"):
        await ensure_public_host(host, 993, allow_private=False)


@pytest.mark.parametrize("host", ["8.8.8.8", "2606:4700:4700::1111", "93.184.216.34"])
async def test_public_addresses_are_accepted(host: str) -> None:
    # Numeric hosts resolve without DNS, so this stays on this machine.
    await ensure_public_host(host, 993, allow_private=False)


async def test_allow_private_hosts_lets_loopback_through() -> None:
    await ensure_public_host("127.0.0.1", 993, allow_private=True)


async def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(HostNotAllowedError, match="does not resolve"):
        await ensure_public_host("no-such-host.invalid", 993, allow_private=False)
