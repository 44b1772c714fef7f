"""OAuth2 for mail accounts: provider apps, the hosted consent flow, token refresh."""
