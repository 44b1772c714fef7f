"""Full-text search over mirrored messages: the search document and its index."""
