"""Reading the output of a command that ran Ray: what the driver printed, without the workers' logs.

Ray forwards every worker's stdout/stderr to the driver, prefixed ``(ActorName pid=N)``. At shutdown
an EnvRunner can be sent SIGTERM while Python runs its ``__del__``, and prints a ``SystemExit``
traceback of Ray's own; that is not the command failing. A real failure shows in the driver's
lines (a trial error is reported by Tune there) and in the exit code, which the tests check too.
"""

from __future__ import annotations

import re

# Optional ANSI colour, then "(Name pid=123)" or "(Name(args) pid=123, ip=...)".
WORKER_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\(.*\bpid=\d+.*?\)")


def driver_output(text: str) -> str:
    """``text`` without the lines forwarded from Ray worker processes."""
    return "\n".join(line for line in text.splitlines() if not WORKER_LINE.match(line))
