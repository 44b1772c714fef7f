"""Messages API: list, read, stream, change flags, move and delete mirrored mail."""
