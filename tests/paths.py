"""Where the checkout's own files are, for tests that read them (docs, monitoring/)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
