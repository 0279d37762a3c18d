"""Great Expectations Data Docs that work offline.

GX 1.24's page templates load Bootstrap, jQuery, bootstrap-table, Vega and Font
Awesome from CDNs, and the logo from GX's web-assets bucket. Opened offline (or
where those hosts are blocked) the index is an unstyled page with an empty list: the
list of validations is drawn by bootstrap-table's JavaScript. `localize_data_docs`
copies the same files, vendored from their npm packages at pinned versions
(gx_static/, see gx_static/NOTICES.md for versions and licences), into the site's
`static/vendor/` and rewrites every page to load them by relative path, so the docs
open from the file system, a mail attachment or any static file server. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

#: The vendored files (package data).
ASSETS_DIR = Path(__file__).resolve().parent / "gx_static"
#: Where they go inside a Data Docs site.
VENDOR_FOLDER = Path("static") / "vendor"

#: URL in GX's templates -> file under gx_static/ (folder = npm package@version).
CDN_ASSETS: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap@4.3.1/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap@4.3.1/js/bootstrap.min.js"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js@1.12.9/umd/popper.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table@1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table@1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table@1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table@1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table@1.19.0/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker@1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker@1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "@forevolve/bootstrap-dark@1.1.0/css/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free@6.6.0/css/all.min.css"
    ),
}
#: GX's own images, served from its bucket by the templates, shipped in its package
#: (the site builder copies them to static/images/).
GX_WEB_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
GX_IMAGES = Path("static") / "images"

# Subresource-integrity and CORS attributes of the CDN tags: a file:// page cannot
# satisfy CORS, so a local script keeping them would not run.
_CDN_ATTRIBUTES = re.compile(r'\s+(?:integrity="[^"]*"|crossorigin="[^"]*")')
_GX_IMAGE = re.compile(re.escape(GX_WEB_ASSETS) + r"([A-Za-z0-9._-]+)")


def localize_data_docs(site: Path) -> int:
    """Vendor the assets into `site` and point every page at them; returns the pages
    rewritten. Idempotent (a page already rewritten has no CDN address left)."""
    vendor = site / VENDOR_FOLDER
    shutil.copytree(ASSETS_DIR, vendor, dirs_exist_ok=True)
    rewritten = 0
    for page in site.rglob("*.html"):
        if vendor in page.parents:
            continue
        text = page.read_text(encoding="utf-8")
        local = localized(text, page.parent, site)
        if local != text:
            page.write_text(local, encoding="utf-8")
            rewritten += 1
    return rewritten


def localized(html: str, folder: Path, site: Path) -> str:
    """`html` (a page in `folder` of the site) with every CDN address made relative."""
    text = html
    for url, asset in CDN_ASSETS.items():
        if url in text:
            text = _replace_url(text, url, _relative(site / VENDOR_FOLDER / asset, folder))
    text = _GX_IMAGE.sub(lambda found: _relative(site / GX_IMAGES / found.group(1), folder), text)
    return _CDN_ATTRIBUTES.sub("", text)


def _replace_url(text: str, url: str, local: str) -> str:
    # Whole attribute values only ("https://cdn.../vega@5" must not touch "...vega@5.1").
    return re.sub(r'(["\'])' + re.escape(url) + r'(["\'])', rf"\g<1>{local}\g<2>", text)


def _relative(target: Path, folder: Path) -> str:
    return Path(os.path.relpath(target, folder)).as_posix()
