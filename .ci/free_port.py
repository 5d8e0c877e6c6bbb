"""Free loopback ports for the CI scripts' own servers: `python3 free_port.py [N]`
prints N of them, one per line; `from free_port import free_port` in Python.

They come from 10000-12000, below the kernel's ephemeral range (32768-60999):
a port that `bind(0)` hands out is one an outgoing connection can take before
the server meant to have it starts. The test suites take theirs from
20000-32000 and the bench from 12000-20000, so none of them collide.
"""

import random
import socket
import sys

LOW, HIGH = 10_000, 12_000


def free_port(taken=()):
    """A port nothing listens on or is bound to now, not in `taken`."""
    for _ in range(1_000):
        port = random.randrange(LOW, HIGH)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise SystemExit(f"no free loopback port in {LOW}-{HIGH}")


if __name__ == "__main__":
    given = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        given.append(free_port(given))
    print("\n".join(map(str, given)))
