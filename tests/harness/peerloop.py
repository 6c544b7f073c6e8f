"""peerloop: how the test peers (smtpsink.py, dnsserver.py) run as a
process: write the port file once listening, reload on SIGHUP, stop on
SIGTERM or SIGINT, and never outlive --max-time."""

import os
import signal
import sys
import threading
import time


def serve(name, server, what, reload, port_file=None, max_time=0):
    """Run a started server until told to stop. reload() re-reads its
    input, named what ("script", "zone") in the log; a failure keeps the
    old one. Returns the exit status."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def on_hup(*_):
        try:
            reload()
            print(f"{name}: {what} reloaded", file=sys.stderr, flush=True)
        except (OSError, ValueError) as e:
            print(f"{name}: reload failed, keeping the old {what}: {e}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGHUP, on_hup)

    if port_file:
        tmp = f"{port_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{server.port}\n")
        os.replace(tmp, port_file)
    print(f"listening on {server.host}:{server.port}", flush=True)

    deadline = time.monotonic() + max_time if max_time > 0 else None
    while not stop.wait(0.2):
        if deadline is not None and time.monotonic() >= deadline:
            break
    server.stop()
    return 0
