"""Golden tests of the hot read routes: recorded answers over a fixed mailbox."""
