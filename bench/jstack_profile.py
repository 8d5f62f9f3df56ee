"""Sample the stacks of the local Flink run's Java processes.

A rough on-CPU profile without an agent. `jstack` dumps every thread of
the TaskManager, the JobManager and Beam's job server at a fixed
interval. For each RUNNABLE thread that is not waiting in an idle or I/O
method, the top frame is counted. The count per frame, over all
samples, says where the Java side of a run spends its time. A thread
blocked in a native read is listed as RUNNABLE by the JVM, so the
idle frames below are skipped.

    .venv/bin/python -m bench.jstack_profile --seconds 30 --top 25

Run it while a benchmark's Flink job is running.
"""

import argparse
import collections
import re
import subprocess
import sys
import time

from bench import flink_cluster

# Frames in which a RUNNABLE thread waits rather than computes.
# Matched anywhere in the frame, because Beam and Flink shade Netty under
# their own packages.
_IDLE_FRAMES = (
    "sun.nio.ch.EPoll.wait",
    "sun.nio.ch.SocketDispatcher.read",
    "sun.nio.ch.Net.poll",
    "io.netty.channel.epoll.Native.epollWait",
    "java.net.SocketInputStream.socketRead",
    "sun.nio.ch.NioSocketImpl.read",
    "java.io.FileInputStream.readBytes",
    "sun.nio.ch.Net.accept",
    "java.lang.ref.Reference.waitForReferencePendingList",
    "jdk.internal.misc.Unsafe.park",
)
_OWN_CODE = ("org.apache.flink.", "org.apache.beam.")
_FRAME = re.compile(r"^\s+at (\S+)\(")


def _pids(markers) -> list[int]:
    pids = []
    for marker in markers:
        found = subprocess.run(
            ["pgrep", "-f", marker], capture_output=True, text=True
        )
        pids.extend(int(pid) for pid in found.stdout.split())
    return sorted(set(pids))


def _busy_frames(dump: str) -> list[str]:
    """Return one label per busy RUNNABLE thread in a dump.

    The label is the top frame, and when that is not Flink's or Beam's
    own code, the first frame that is, so that `HashMap.get` comes with
    its caller.
    """
    labels = []
    for thread in dump.split("\n\n"):
        if "java.lang.Thread.State: RUNNABLE" not in thread:
            continue
        frames = [
            match.group(1)
            for match in map(_FRAME.match, thread.splitlines())
            if match
        ]
        if not frames or any(idle in frames[0] for idle in _IDLE_FRAMES):
            continue
        label = frames[0]
        if not label.startswith(_OWN_CODE):
            caller = next((f for f in frames if f.startswith(_OWN_CODE)), "")
            label = f"{label} <- {caller}" if caller else label
        labels.append(label)
    return labels


def profile(seconds: float, interval: float) -> tuple[int, collections.Counter]:
    """Sample for `seconds`; return (samples taken, frame counts)."""
    counts = collections.Counter()
    samples = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in _pids(flink_cluster.JAVA_PROCESS_MARKERS):
            dump = subprocess.run(
                ["jstack", str(pid)], capture_output=True, text=True
            ).stdout
            counts.update(_busy_frames(dump))
        samples += 1
        time.sleep(interval)
    return samples, counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jstack_profile")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="Sampling time, s."
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="Time between samples, s."
    )
    parser.add_argument(
        "--top", type=int, default=25, help="Frames to print. Default 25."
    )
    args = parser.parse_args(argv)
    samples, counts = profile(args.seconds, args.interval)
    total = sum(counts.values())
    print(f"{samples} samples, {total} busy thread stacks")
    for frame, count in counts.most_common(args.top):
        print(f"{count:6d} {100 * count / max(total, 1):5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
