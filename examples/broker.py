#!/usr/bin/env python3
"""A Kafka broker by hand (`make broker`): the embedded Tansu broker on a fixed port, with
the command topic made, running until Ctrl-C.

For trying the ingestor against a real SciCat without a Kafka of one's own: the sample
configuration and the producer already point at localhost:9092. The broker keeps its
topics in memory only: a restart starts empty.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from kafka_broker import TansuBroker, create_topic  # noqa: E402

TOPIC = "command_channel"


@contextlib.contextmanager
def ctrl_c_for_this_process_only() -> typing.Iterator[None]:
    """Take the terminal's foreground from make, which started us.

    On Ctrl-C the terminal signals its whole foreground process group; make, one of them,
    would answer with "*** [demo] Interrupt" and exit 130 however cleanly we stop. In a group
    of our own in the foreground, the Ctrl-C is ours alone; make gets the terminal back after.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:  # no terminal: nothing to take
        yield
        return
    try:
        if os.tcgetpgrp(tty) != os.getpgrp():  # started in the background: leave the terminal alone
            yield
            return
        previous = os.getpgrp()
        try:
            os.setpgid(0, 0)
        except OSError:  # a session leader already: the group is ours
            yield
            return
        # A background group may not set the foreground without this.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(tty, os.getpgrp())
        try:
            yield
        finally:
            os.tcsetpgrp(tty, previous)
    finally:
        os.close(tty)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9092, help="loopback port to listen on (default %(default)s)")
    args = parser.parse_args(argv)
    # SIGTERM stops it like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with ctrl_c_for_this_process_only():
        try:
            with TansuBroker(port=args.port) as broker:
                create_topic(broker.bootstrap, TOPIC, partitions=1)
                print(f"Kafka broker (Tansu) listening at {broker.bootstrap}, topic {TOPIC} made; "
                      f"Ctrl-C stops it", flush=True)
                signal.pause()
        except KeyboardInterrupt:
            print("\nbroker stopped")
        except RuntimeError as e:  # the port taken, most likely
            print(f"broker: cannot start on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
