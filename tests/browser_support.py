"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) with the
network off: pages on this machine (file:// and http://127.0.0.1) load, nothing else.

"Off" three ways, so that a page that reaches out is caught rather than slowed:
every request Playwright sees for another host is refused and recorded (the tests
assert the record is empty), Chromium's proxy for every other host is a closed
port, and no host name resolves but loopback's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Port 9 (discard) of loopback: nothing listens, so a request sent on is refused.
    # Loopback itself bypasses the proxy (Chromium's implicit rule).
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


@dataclass
class Offline:
    """The page, and every request it tried to send off this machine."""

    page: Any
    outside: list[str] = field(default_factory=list)


@contextmanager
def offline_page(timeout_ms: int = 90_000) -> Iterator[Offline]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            page = context.new_page()
            opened = Offline(page)

            def only_loopback(route: Any) -> None:
                if urlsplit(route.request.url).hostname in LOOPBACK:
                    route.continue_()
                else:
                    opened.outside.append(route.request.url)
                    route.abort()

            # Requests over the network only (file:// pages are read, not routed).
            context.route(lambda url: url.startswith(("http:", "https:")), only_loopback)
            # A loaded two-core machine is slow to paint.
            page.set_default_timeout(timeout_ms)
            yield opened
        finally:
            browser.close()
