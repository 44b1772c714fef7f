"""The operator console: `/console`, server-rendered pages over the API's services.

Jinja2 renders the pages; htmx (vendored in `static/`, no CDN) refreshes the
accounts table and streams an account's events over Server-Sent Events. Every page
and action resolves its principal exactly as the API does (the API key's token, the
tenant in the path as `X-Tenant-ID` would select it, the route's scope and the
tenant's rate limit) and calls the same services, so the console can do nothing a
key's API client could not.

Sign-in exchanges an API key for the API's own access token, kept in an HttpOnly,
SameSite=Strict cookie together with a random CSRF token; every form post carries
that token, and must come from this origin. Pages are sent with a
Content-Security-Policy that allows scripts and styles from this origin only (no
inline script or style at all). `CONSOLE_ENABLED=false` leaves the routes out.
"""
