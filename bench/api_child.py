"""Child process of bench/api.py: the smallest FastAPI endpoint, served like mailsvc.

`GET /status` answers `{"status": "ok"}`: no middleware, no dependencies, no database.
It is served by `uvicorn.run` with the options `mailsvc serve` passes (mailsvc/cli.py:
one worker, `log_config=None`, `proxy_headers=True`, loop and HTTP implementation left
at `auto`, i.e. uvloop and httptools when installed), and with uvicorn's access log
at WARNING as mailsvc's logging configuration leaves it, so the two servers differ
only in the application they run.

Run by bench/api.py as `api_child.py --port N`; alone it only explains itself.
"""

from __future__ import annotations

import argparse
import logging

from fastapi import FastAPI

app = FastAPI()


@app.get("/status")
async def status() -> dict[str, str]:
    """A small fixed JSON object."""
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.port is None:
        print(__doc__)
        return

    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    # mailsvc.logging.configure_logging does the same: no access line per request.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
