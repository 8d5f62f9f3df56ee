"""Tests of the benchmark's Java CPU accounting and stack sampling."""

import os
import pathlib
import time

from bench import flink_cluster, jstack_profile

_DUMP = """\
"grpc-default-executor-3" #41 daemon prio=5 os_prio=0
   java.lang.Thread.State: RUNNABLE
\tat java.util.HashMap.getNode(HashMap.java:568)
\tat java.util.HashMap.get(HashMap.java:556)
\tat org.apache.beam.runners.fnexecution.control.Foo.bar(Foo.java:10)

"epoll-1" #12 daemon prio=5 os_prio=0
   java.lang.Thread.State: RUNNABLE
\tat shaded.io.netty.channel.epoll.Native.epollWait(Native Method)
\tat org.apache.beam.vendor.grpc.v1p60p1.io.netty.Foo.run(Foo.java:1)

"Flink Task" #50 prio=5 os_prio=0
   java.lang.Thread.State: RUNNABLE
\tat org.apache.flink.runtime.io.Sorter.sort(Sorter.java:77)

"waiting" #51 prio=5 os_prio=0
   java.lang.Thread.State: TIMED_WAITING (sleeping)
\tat java.lang.Thread.sleep(Native Method)
"""


def test_busy_frames_name_caller_of_jdk_frame():
    labels = jstack_profile._busy_frames(_DUMP)
    assert (
        "java.util.HashMap.getNode <- "
        "org.apache.beam.runners.fnexecution.control.Foo.bar"
    ) in labels


def test_busy_frames_keep_own_code_frame():
    labels = jstack_profile._busy_frames(_DUMP)
    assert "org.apache.flink.runtime.io.Sorter.sort" in labels


def test_busy_frames_skip_idle_and_waiting_threads():
    labels = jstack_profile._busy_frames(_DUMP)
    assert len(labels) == 2
    assert not any("epollWait" in label for label in labels)
    assert not any("sleep" in label for label in labels)


def test_cpu_seconds_count_matching_process():
    # This process's own command line serves as the marker, so the sum
    # must include the CPU time this test burns.
    command = pathlib.Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
    marker = command.split(b"\0")[0].decode()
    before = flink_cluster.java_cpu_seconds((marker,))
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = flink_cluster.java_cpu_seconds((marker,))
    assert after - before >= 0.2


def test_cpu_seconds_zero_without_match():
    marker = "no-process-has-this-marker-9f1c"
    by_marker = flink_cluster.java_cpu_seconds_by_marker((marker,))
    assert by_marker == {marker: 0.0}
