pytest_plugins = [
    "tests.fixtures.peers",
    "tests.fixtures.databases",
    "tests.fixtures.app",
    "tests.fixtures.mail",
    "tests.fixtures.idle",
    "tests.fixtures.processes",
    "tests.fixtures.oauth_peers",
    "tests.fixtures.oauth_accounts",
]
