"""Entry point of one measurement: `python -m bench.child '{"workload": ..., "args": {...}}'`.

Prints one JSON line (prefixed, so library output on stdout cannot be mistaken
for it); the parent reads the child's peak RSS from its own wait4().
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from bench.workloads import WORKLOADS

MARK = "BENCH-RESULT "


def main() -> None:
    spec = json.loads(sys.argv[1])
    workload: Callable[..., dict[str, Any]] = WORKLOADS[spec["workload"]]
    result = workload(**spec["args"])
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
