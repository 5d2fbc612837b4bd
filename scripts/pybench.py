#!/usr/bin/env python3
"""ipcbench's Python baseline: Python's own multiprocessing, run for real.

Runs the harness's patterns over multiprocessing's transports, checks every
message (sequence number and checksum), and writes a results file in
ipcbench's schema (docs/results-schema.md), so one report shows Python
beside the Rust strategies. Standard library only; Python 3.9 or later.

    python3 scripts/pybench.py --profile quick --output py.json
    python3 scripts/pybench.py --transports py-pipe --patterns pingpong \\
        --sizes 64 --count 300 --output /tmp/py.json

`ipcbench run` runs this script itself when python3 is found (--no-python
leaves it out).

Transports (multiprocessing's counterpart of each ipcbench strategy):
  py-pipe             Pipe() with send_bytes/recv_bytes         (shm-pipe)
  py-queue            Queue(), unbounded                        (shm-queue)
  py-queue-bounded    Queue(maxsize=64)
  py-simplequeue      SimpleQueue()
  py-manager-queue    Manager().Queue() proxies                 (manager-unix)
  py-manager-dict     Manager().dict() proxies, set then get    (reqrep)
  py-manager-list     Manager().list() proxies, one per client,
                      append then [i]                           (reqrep-list)
  py-manager-namespace  a Manager().Namespace() proxy, an attribute per
                      client, set then read                     (reqrep-namespace)
  py-manager-value    Manager().Value('d') proxies, one per client,
                      .value set then read                      (reqrep-value)
  py-basemanager-tcp  a BaseManager serving queues and a dict over TCP
                      loopback with an authkey                  (manager-tcp)
  py-shared-memory    multiprocessing.shared_memory by hand, a slot per
                      direction and a spinning flag             (shm-ring)

A message of `size` bytes (at least 8):
  size >= 32: [seq u64][send time u64][sum u64] payload [seq u64], where sum
              ties the sequence number and send time to a CRC-32 of the
              payload, which the receiver recomputes over every byte;
  size <  32: every byte derives from seq, and the receiver compares them all.
"""

import argparse
import ctypes
import datetime
import json
import multiprocessing as mp
import os
import platform
import resource
import secrets
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import zlib
from multiprocessing import shared_memory
from multiprocessing.managers import BaseManager

SCHEMA_VERSION = 2
MIN_SIZE = 8
STAMPED_SIZE = 32
MASK = (1 << 64) - 1
HEAD = struct.Struct("<QQQ")
TAIL = struct.Struct("<Q")
PRODUCER_SHIFT = 24
STAMP_EVERY = 16

TRANSPORTS = {
    "py-pipe": "Pipe() with send_bytes/recv_bytes",
    "py-queue": "Queue(), unbounded",
    "py-queue-bounded": "Queue(maxsize=64)",
    "py-simplequeue": "SimpleQueue()",
    "py-manager-queue": "Manager().Queue() proxies",
    "py-manager-dict": "Manager().dict() proxies, set then get",
    "py-manager-list": "Manager().list() proxies, one per client: append, then [i]",
    "py-manager-namespace": "a Manager().Namespace() proxy, an attribute per client: set, then read",
    "py-manager-value": "Manager().Value('d') proxies, one per client: .value set, then read",
    "py-basemanager-tcp": "BaseManager serving queues and a dict over TCP loopback, authkey",
    "py-shared-memory": "shared_memory by hand, a slot per direction and a spinning flag",
    "py-lock": "Lock() around an increment of a RawValue",
    "py-semaphore": "Semaphore(1) around an increment of a RawValue",
    "py-value": "Value('q') incremented under its get_lock()",
    "py-array": "Array('d', 16), every element bumped under its get_lock()",
    "py-event": "two Events handing a turn back and forth",
    "py-joinable-queue": "JoinableQueue(): 64 items put then join(), each got and task_done()",
    "py-rlock": "RLock() taken twice around an increment of a RawValue",
    "py-condition": "Condition() over a one-slot RawValue: wait_for, fill or empty, notify",
    "py-barrier": "Barrier(N) passed again and again, a Value bumped under its lock before each pass",
    "py-start-fork": "Process(...).start() with the fork start method, to its first message",
    "py-start-forkserver": "Process(...).start() with forkserver, to its first message",
    "py-start-spawn": "Process(...).start() with spawn, to its first message",
    "py-pool-map": "Pool(W).map(task, tasks), default chunksize",
    "py-pool-map-chunk1": "Pool(W).map(task, tasks, chunksize=1)",
    "py-pool-apply-async": "Pool(W).apply_async(task) for every task, then every get()",
    "py-basemanager-pool": "BaseManager over TCP serving a task and a result queue to W workers",
}
# Patterns each transport can do.
CAN = {
    "py-pipe": {"rate", "pingpong", "stream"},
    "py-queue": {"rate", "pingpong", "stream", "mpmc"},
    "py-queue-bounded": {"pingpong", "stream", "mpmc"},
    "py-simplequeue": {"pingpong", "stream", "mpmc"},
    "py-manager-queue": {"pingpong", "stream", "mpmc"},
    "py-manager-dict": {"reqrep", "reqrep-rate"},
    "py-manager-list": {"reqrep-list"},
    "py-manager-namespace": {"reqrep-namespace"},
    "py-manager-value": {"reqrep-value"},
    "py-basemanager-tcp": {"pingpong", "stream", "mpmc", "reqrep"},
    "py-shared-memory": {"rate", "pingpong", "stream"},
    "py-lock": {"lock-increment"},
    "py-semaphore": {"lock-increment"},
    "py-value": {"lock-increment"},
    "py-array": {"lock-increment"},
    "py-event": {"event-pingpong"},
    "py-joinable-queue": {"joinable"},
    "py-rlock": {"rlock-increment"},
    "py-condition": {"condition-handoff"},
    "py-barrier": {"barrier-cycle"},
    "py-start-fork": {"startup"},
    "py-start-forkserver": {"startup"},
    "py-start-spawn": {"startup"},
    "py-pool-map": {"pool", "pool-cpu"},
    "py-pool-map-chunk1": {"pool", "pool-cpu"},
    "py-pool-apply-async": {"pool", "pool-cpu"},
    "py-basemanager-pool": {"pool", "pool-cpu"},
}
PATTERNS = ["pingpong", "stream", "mpmc", "reqrep", "lock-increment", "event-pingpong",
            "joinable", "startup", "pool", "pool-cpu", "rate", "reqrep-rate", "rlock-increment",
            "condition-handoff", "barrier-cycle", "reqrep-list", "reqrep-namespace",
            "reqrep-value"]
# Closed-loop calls on a manager's objects: a dict, lists, a Namespace,
# Values (as the Rust side's Pattern::calls, less reqrep-rate).
CALLS = ("reqrep", "reqrep-list", "reqrep-namespace", "reqrep-value")
# A Value('d') holds 8 bytes: reqrep-value's one size (as spec::VALUE_SIZE).
VALUE_SIZE = 8
# Open loop (as the Rust side's harness::rate): the offered loads of each
# profile after the unpaced point ("max") that measures the capacity the
# percentages are of; absolute rates past MAX_OVERLOAD times it are
# skipped; a paced point measures its budget's worth of messages and at
# least MIN_RATE_MESSAGES when that takes at most MIN_COUNT_SECONDS.
RATE_LOADS = {
    "quick": ["50%", "100%", "10k"],
    "default": ["10%", "50%", "80%", "90%", "95%", "100%", "110%", "1k", "10k", "100k", "1M"],
}
RATE_LOADS["full"] = RATE_LOADS["default"]
RATE_SIZE = 64
# Clients of reqrep-rate, per profile (as Profile::rate_clients).
RATE_CLIENTS = {"quick": 1, "default": 2, "full": 2}
MAX_OVERLOAD = 1.1
MIN_RATE_MESSAGES = 1_000
MIN_COUNT_SECONDS = 2.0
# A sleeping sender's first guess at how late a sleep wakes, and its most.
FIRST_OVERSLEEP_NS = 50_000
MAX_OVERSLEEP_NS = 500_000
# Task farms (as the Rust side's): 64-byte tasks, 50 µs of CPU each in
# pool-cpu, at most 4 per worker in flight where the master paces them.
POOL_TASK = 64
POOL_WORK_NS = 50_000
POOL_WINDOW = 4
# Starts measured at most when a count is given (a spawn takes ~50 ms).
STARTUP_MAX_COUNT = 20
SYNC_PATTERNS = ("lock-increment", "event-pingpong", "joinable", "rlock-increment",
                 "condition-handoff", "barrier-cycle")
# Items put between two joins (as the Rust side's).
JOIN_BATCH = 64
# Elements of py-array's array (as shm-array's): 8 bytes each.
ARRAY_LEN = 16
SIZES_ALL = [8, 64, 1 << 10, 4 << 10, 64 << 10, 1 << 20]
PROFILES = {
    # sizes, multi-party sizes, process counts, seconds per point (the
    # Rust side's time budgets: harness::plan::Profile::opts)
    "quick": ([64], [64], [1, 2], 0.1),
    "default": (SIZES_ALL, [64, 4 << 10], [1, 2, 4, 8], 0.5),
    "full": (SIZES_ALL, [64, 4 << 10, 64 << 10], [1, 2, 4, 8], 2.0),
}
# As the Rust side's (harness::spec): the least round trips and messages a
# one-to-one point measures, within this many budgets; batches per point.
MIN_ROUND_TRIPS = 1_000
MIN_MESSAGES = 10_000
MIN_COUNT_BUDGETS = 8
BATCHES = 20
# A shared channel's receivers (and reqrep's clients) note the time every
# this many messages (calls), for its batches (as the Rust side's marks).
MARK_STEP = 16
DEADLINE_S = 120.0


def mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class CheckError(Exception):
    pass


class Codec:
    """Writes and checks the messages of one size."""

    def __init__(self, size, corrupt_at=None):
        if size < MIN_SIZE:
            raise ValueError(f"message size {size} B is below the minimum of {MIN_SIZE} B")
        self.size = size
        self.corrupt_at = corrupt_at
        if size >= STAMPED_SIZE:
            n = size - HEAD.size - TAIL.size
            state, words = 0x5EED, []
            for _ in range((n + 7) // 8):
                state = mix64(state)
                words.append(state.to_bytes(8, "little"))
            self.payload = b"".join(words)[:n]
            self.payload_crc = zlib.crc32(self.payload)

    def _sum(self, seq, ts, crc):
        return (mix64(seq) ^ ts ^ (crc << 32 | crc)) & MASK

    def make(self, seq, ts=0):
        if self.size < STAMPED_SIZE:
            h = mix64(seq).to_bytes(8, "little")
            m = (seq & 0xFFFFFFFF).to_bytes(4, "little") + (h * 4)[: self.size - 4]
        else:
            m = (
                HEAD.pack(seq, ts, self._sum(seq, ts, self.payload_crc))
                + self.payload
                + TAIL.pack(seq)
            )
        if seq == self.corrupt_at:
            # A fault injected on request: the receiver must catch it.
            b = bytearray(m)
            b[len(b) // 2] ^= 0x40
            m = bytes(b)
        return m

    def check(self, m, seq):
        """Raises CheckError unless `m` is message `seq`; returns its send time."""
        if len(m) != self.size:
            raise CheckError(f"message {seq}: {len(m)} bytes where {self.size} were sent")
        if self.size < STAMPED_SIZE:
            if m != self.make(seq) or seq == self.corrupt_at:
                got = int.from_bytes(m[:4], "little")
                raise CheckError(f"message {seq}: wrong bytes (starts like message {got})")
            return 0
        got, ts, s = HEAD.unpack_from(m)
        if got != seq:
            raise CheckError(f"message {seq}: carries sequence number {got} (lost, duplicated or reordered)")
        (tail,) = TAIL.unpack_from(m, self.size - TAIL.size)
        if tail != seq:
            raise CheckError(f"message {seq}: its end belongs to message {tail} (torn)")
        crc = zlib.crc32(memoryview(m)[HEAD.size : self.size - TAIL.size])
        if s != self._sum(seq, ts, crc):
            raise CheckError(f"message {seq}: checksum mismatch (corrupted payload)")
        return ts

    def seq_of(self, m):
        if len(m) < 4:
            raise CheckError(f"a {len(m)}-byte message")
        if self.size < STAMPED_SIZE:
            return int.from_bytes(m[:4], "little")
        return HEAD.unpack_from(m)[0]


def tagged(pid, i):
    return (pid << PRODUCER_SHIFT) | i


def now_ns():
    # CLOCK_MONOTONIC, as the Rust harness: one clock for every process.
    return time.monotonic_ns()


def cpu_ns():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e9)


def percentiles(samples):
    if not samples:
        return None
    s = sorted(samples)
    n = len(s)

    def q(x):
        return s[min(n - 1, max(0, int(x * n + 0.5) - 1))]

    return {
        "mean": sum(s) / n,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p999": q(0.999),
        "p9999": q(0.9999),
        "max": s[-1],
    }


# ---------------------------------------------------------------- channels


class TcpManager(BaseManager):
    """The network form: a server process owns queues and a dict."""


_tcp_objects = {}


def _tcp_queue(name):
    import queue

    return _tcp_objects.setdefault("q:" + name, queue.Queue())


def _tcp_dict():
    return _tcp_objects.setdefault("dict", {})


TcpManager.register("get_queue", callable=_tcp_queue)
TcpManager.register("get_dict", callable=_tcp_dict, exposed=("__setitem__", "__getitem__", "get"))


# Measured again, at every pattern they have, with their BaseManager's
# server on the second host.
FAR_SERVED = ("py-basemanager-tcp", "py-basemanager-pool")

# The environment variable that carries a far server's authkey (hex): never
# on a command line, which other users can read.
AUTHKEY_ENV = "IPCBENCH_PY_AUTHKEY"


def start_far_server(far, authkey, cleanup):
    """Starts a TcpManager server on the second host `far` (through its
    command prefix, as `ipcbench peer py-basemanager-serve ADDR`, which runs
    this script there with --serve-basemanager) and returns its address.
    The server ends when its standard input closes: when `cleanup` runs, or
    when this script ends however it ends."""
    cmd = list(far["prefix"]) + [far["ipcbench"], "peer", "--deadline-s", "86400", "py-basemanager-serve", far["addr"]]
    env = dict(os.environ, **{AUTHKEY_ENV: authkey.hex()})
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def stop():
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    cleanup.append(stop)
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line.isdigit():
        raise PointFailed(f"the BaseManager server on the second host ({' '.join(cmd)}) "
                          f"did not say its port (it said {line!r}; its errors are above)")
    return (far["addr"], int(line))


def serve_basemanager(addr):
    """--serve-basemanager: a TcpManager server at `addr` on a free port,
    which it prints; the authkey in the environment. Ends when standard
    input closes (the script that started it is done, or gone)."""
    server = TcpManager(address=(addr, 0), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV])).get_server()
    print(server.address[1], flush=True)

    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


def tcp_client(address, authkey):
    m = TcpManager(address=tuple(address), authkey=authkey)
    m.connect()
    return m


class Slot:
    """One direction of py-shared-memory: [flag u64][len u64] data.

    The two words are read and written through a memoryview cast to 'Q': one
    8-byte load or store each. (struct.pack_into would not do: it zero-fills
    the field before writing it, so a peer can read 0, a flag that says
    "empty", in the middle of a store.)"""

    def __init__(self, name, offset, cap, spin):
        self.name, self.offset, self.cap, self.spin = name, offset, cap, spin
        self.shm = None

    def __getstate__(self):
        return (self.name, self.offset, self.cap, self.spin)

    def __setstate__(self, s):
        self.name, self.offset, self.cap, self.spin = s
        self.shm = None

    def _buf(self):
        if self.shm is None:
            # Peers share the coordinator's resource tracker (fork and spawn
            # alike), which forgets the name when the creator unlinks it.
            self.shm = shared_memory.SharedMemory(name=self.name)
            self.words = self.shm.buf.cast("Q")
        return self.shm.buf

    def send(self, m, seq):
        buf = self._buf()
        o, w = self.offset, self.words
        f = o // 8
        # Wait until the reader took the previous message (flag even).
        while w[f] & 1:
            self.spin()
        buf[o + 16 : o + 16 + len(m)] = m
        w[f + 1] = len(m)
        # Payload and length first, then the flag (x86 keeps stores in order).
        w[f] = (seq << 1) | 1

    def recv(self):
        buf = self._buf()
        o, w = self.offset, self.words
        f = o // 8
        while True:
            flag = w[f]
            if flag & 1:
                break
            self.spin()
        n = w[f + 1]
        m = bytes(buf[o + 16 : o + 16 + n])
        w[f] = flag & ~1
        return m

    def close(self):
        if self.shm is not None:
            self.words.release()
            self.shm.close()
            self.shm = None


def _nop():
    pass


class End:
    """One side of a one-to-one channel, or a client of a shared one."""

    def __init__(self, kind, out, inp):
        self.kind, self.out, self.inp = kind, out, inp
        self.seq = 0

    def open(self):
        if self.kind == "py-basemanager-tcp" and isinstance(self.out, tuple):
            address, authkey, out_name, in_name = self.out
            m = tcp_client(address, authkey)
            self.manager = m
            self.out = m.get_queue(out_name) if out_name else None
            self.inp = m.get_queue(in_name) if in_name else None
        return self

    def send(self, m):
        if self.kind == "py-pipe":
            self.out.send_bytes(m)
        elif self.kind == "py-shared-memory":
            self.seq += 1
            self.out.send(m, self.seq)
        else:
            self.out.put(m)

    def recv(self):
        if self.kind == "py-pipe":
            return self.inp.recv_bytes()
        if self.kind == "py-shared-memory":
            return self.inp.recv()
        return self.inp.get()

    def flush(self):
        """Waits until what was sent is in the channel (a Queue's feeder
        thread may still hold it), so a later end-of-stream comes after it."""
        if self.kind in ("py-queue", "py-queue-bounded"):
            self.out.close()
            self.out.join_thread()

    def close(self):
        for x in (self.out, self.inp):
            if isinstance(x, Slot):
                x.close()


class Channel:
    """What the coordinator makes for a point, and takes down after it.

    `far`: the second host a BaseManager's server runs on (every client
    stays here, as a BaseManager's clients reach a server on another
    machine)."""

    def __init__(self, ctx, kind, size, far=None):
        self.kind, self.size = kind, size
        self.cleanup = []
        if kind == "py-pipe":
            a, b = ctx.Pipe()
            self.ends = (End(kind, a, a), End(kind, b, b))
        elif kind in ("py-queue", "py-queue-bounded", "py-simplequeue"):
            def make():
                if kind == "py-simplequeue":
                    return ctx.SimpleQueue()
                return ctx.Queue(64 if kind == "py-queue-bounded" else 0)

            ab, ba = make(), make()
            self.ends = (End(kind, ab, ba), End(kind, ba, ab))
            self.shared = ab
        elif kind in ("py-manager-queue", "py-manager-dict", "py-manager-list",
                      "py-manager-namespace", "py-manager-value"):
            m = ctx.Manager()
            # Held: a manager shuts its server down when collected.
            self.manager = m
            self.cleanup.append(m.shutdown)
            if kind == "py-manager-dict":
                self.dict = m.dict()
                self.ends = (None, None)
            elif kind == "py-manager-namespace":
                self.namespace = m.Namespace()
                self.ends = (None, None)
            elif kind in ("py-manager-list", "py-manager-value"):
                # One per client, made when the clients are counted.
                self.ends = (None, None)
            else:
                ab, ba = m.Queue(), m.Queue()
                self.ends = (End(kind, ab, ba), End(kind, ba, ab))
                self.shared = ab
        elif kind == "py-basemanager-tcp" and far:
            authkey = secrets.token_bytes(32)
            address = start_far_server(far, authkey, self.cleanup)
            self.ends = (
                End(kind, (address, authkey, "ab", "ba"), None),
                End(kind, (address, authkey, "ba", "ab"), None),
            )
            self.tcp = (address, authkey)
            self.shared = End(kind, (address, authkey, "ab", None), None)
        elif kind == "py-basemanager-tcp":
            authkey = secrets.token_bytes(32)
            m = TcpManager(address=("127.0.0.1", 0), authkey=authkey, ctx=ctx)
            m.start()
            self.manager = m
            self.cleanup.append(m.shutdown)
            address = m.address
            self.ends = (
                End(kind, (address, authkey, "ab", "ba"), None),
                End(kind, (address, authkey, "ba", "ab"), None),
            )
            self.tcp = (address, authkey)
            self.shared = End(kind, (address, authkey, "ab", None), None)
        elif kind == "py-shared-memory":
            cap = 16 + (max(size, 8) + 7) // 8 * 8
            # Named like ipcbench's own files, so `ipcbench clean` finds leftovers.
            name = f"ipcbench-py-{os.getpid()}-{secrets.token_hex(4)}"
            shm = shared_memory.SharedMemory(name=name, create=True, size=2 * cap)
            shm.buf[:] = bytes(2 * cap)
            self.cleanup.append(shm.unlink)
            self.cleanup.append(shm.close)
            ab = Slot(shm.name, 0, cap, _nop)
            ba = Slot(shm.name, cap, cap, _nop)
            self.ends = (End(kind, ab, ba), End(kind, ba, ab))
        else:
            raise ValueError(f"unknown transport {kind}")

    def stop_message(self):
        return b""

    def close(self):
        for f in reversed(self.cleanup):
            try:
                f()
            except Exception:
                pass


# ---------------------------------------------------------------- peers


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def measured(a, start, least, stretch=1.0):
    """The measured message numbers from `start`: exactly `count` of them
    when given, else as many as fit in the point's time budget (times
    `stretch`), and at least `least` (for a p99) if that takes at most
    MIN_COUNT_BUDGETS budgets (at most `max_iters`)."""
    if a.get("count"):
        yield from range(start, start + a["count"])
        return
    t0 = time.perf_counter_ns()
    end = t0 + int(a["budget"] * stretch * 1e9)
    cap = t0 + int(a["budget"] * 1e9 * MIN_COUNT_BUDGETS)
    hi = start + a["max_iters"]
    i = start
    while i < hi:
        now = time.perf_counter_ns()
        if now >= end and (i - start >= least or now >= cap):
            return
        yield i
        i += 1


def median_of_sorted(s):
    n = len(s)
    return s[min(n - 1, max(0, int(0.5 * n + 0.5) - 1))]


def batches_of(times, end, lat_at):
    """The measured messages in BATCHES consecutive runs of equal count, as
    the Rust side cuts them: [median latency ns (0 when none), messages per
    second] each. `times[k]` is when message k was handled, `end` after the
    last; `lat_at` the (k, latency) pairs, in order of k. A last run shorter
    than half the others is left out."""
    n = len(times)
    if n == 0:
        return []
    per = -(-n // BATCHES)
    out, j = [], 0
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        if (hi - lo) * 2 < per:
            break
        lats = []
        while j < len(lat_at) and lat_at[j][0] < hi:
            if lat_at[j][0] >= lo:
                lats.append(lat_at[j][1])
            j += 1
        t_hi = times[hi] if hi < n else end
        lats.sort()
        out.append([median_of_sorted(lats) if lats else 0, (hi - lo) * 1e9 / max(1, t_hi - times[lo])])
    return out


def merged_batches(start, marks):
    """A shared channel's batches over all its receivers together, as the
    Rust side's harness::measure::merged_batches: every receiver's marks
    (`step`, [times]) in time order, cut into BATCHES runs of about equal
    count, each [0, messages per second]."""
    events = sorted((t, step) for step, times in marks for t in times)
    total = sum(step for _, step in events)
    per = max(1, -(-total // BATCHES))
    out, frm, n = [], start, 0
    for t, step in events:
        n += step
        if n >= per and t > frm:
            out.append([0, n * 1e9 / (t - frm)])
            frm, n = t, 0
    return out


def hist_pairs(samples):
    """Latency samples as (value, count) pairs at three significant digits
    (what the histogram they go into keeps)."""
    c = {}
    for v in samples:
        d = len(str(v)) - 3
        if d > 0:
            v -= v % (10 ** d)
        c[v] = c.get(v, 0) + 1
    return sorted(c.items())


def peer_main(role, args, ctl, go):
    """Runs in a child: report 'ready', wait for go, do `role`, send the report."""
    try:
        pin(args.get("cpu"))
        codec = Codec(args["size"], args.get("corrupt_at"))
        obj = args["end"]
        if isinstance(obj, End):
            obj.open()
        ctl.send("ready")
        if not go.wait(DEADLINE_S):
            raise RuntimeError("no go from the coordinator")
        report = ROLES[role](obj, codec, args)
        if isinstance(obj, End):
            obj.close()
        ctl.send(report)
    except CheckError as e:
        ctl.send({"error": str(e)})
    except BaseException as e:  # noqa: BLE001 - reported, not swallowed
        ctl.send({"error": f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).strip().splitlines()[-1]})"})


def role_ping(end, codec, a):
    warm = a["warmup"]
    for i in range(warm):
        end.send(codec.make(i))
        codec.check(end.recv(), i)
    samples, times = [], []
    c0 = cpu_ns()
    t_start = time.perf_counter_ns()
    for i in measured(a, warm, MIN_ROUND_TRIPS):
        m = codec.make(i)
        t0 = time.perf_counter_ns()
        end.send(m)
        r = end.recv()
        samples.append(time.perf_counter_ns() - t0)
        times.append(t0)
        codec.check(r, i)
    t_end = time.perf_counter_ns()
    elapsed = t_end - t_start
    cpu = cpu_ns() - c0
    end.send(b"")
    return {"messages": len(samples), "elapsed_ns": elapsed, "latency": percentiles(samples),
            "cpu_ns": cpu, "measured_ns": elapsed, "hist": hist_pairs(samples),
            "batches": batches_of(times, t_end, list(enumerate(samples)))}


def role_echo(end, codec, a):
    c0 = cpu_ns()
    n = 0
    while True:
        m = end.recv()
        if not m:
            break
        end.send(m)
        n += 1
    return {"messages": n, "cpu_ns": cpu_ns() - c0}


def role_send(end, codec, a):
    warm = a["warmup"]
    for i in range(warm):
        end.send(codec.make(i))
    c0 = cpu_ns()
    stamped = codec.size >= STAMPED_SIZE
    n = 0
    # A tenth more: the receiver's time runs from its first message to its
    # last, a little shorter than the sender's.
    for i in measured(a, warm, MIN_MESSAGES, 1.1):
        end.send(codec.make(i, now_ns() if stamped and i % STAMP_EVERY == 0 else 0))
        n += 1
    end.send(b"")
    return {"messages": n, "cpu_ns": cpu_ns() - c0}


def role_recv(end, codec, a):
    warm = a["warmup"]
    for i in range(warm):
        codec.check(end.recv(), i)
    c0 = cpu_ns()
    samples, lat_at, times, i = [], [], [], warm
    while True:
        m = end.recv()
        if not m:
            break
        t = now_ns()
        ts = codec.check(m, i)
        times.append(t)
        if ts:
            samples.append(t - ts)
            lat_at.append((i - warm, t - ts))
        i += 1
    n = i - warm
    elapsed = times[-1] - times[0] if times else 0
    # Batches over the intervals after the first message.
    return {"messages": n, "elapsed_ns": elapsed, "latency": percentiles(samples),
            "cpu_ns": cpu_ns() - c0, "intervals": max(0, n - 1), "measured_ns": elapsed,
            "hist": hist_pairs(samples),
            "batches": batches_of(times[:-1], times[-1], lat_at) if n > 1 else []}


def parse_load(text):
    """`max`, `80%` or `10k`/`1M`/`500` as ("max", None), ("pct", 80) or
    ("abs", rate); None when it is none of them."""
    t = text.strip()
    if t == "max":
        return ("max", None)
    try:
        if t.endswith("%"):
            p = int(t[:-1])
            return ("pct", p) if 1 <= p <= 1000 else None
        mult = {"k": 1e3, "K": 1e3, "M": 1e6, "m": 1e6}.get(t[-1:], 1.0)
        v = float(t[:-1] if mult != 1.0 else t) * mult
        return ("abs", v) if 1.0 <= v <= 1e9 else None
    except ValueError:
        return None


def paced_count(a, rate):
    """Messages a point offered `rate` measures (as harness::rate::paced_counts)."""
    if a.get("count"):
        return a["count"]
    least = min(MIN_RATE_MESSAGES, int(rate * MIN_COUNT_SECONDS))
    return max(int(rate * a["budget"]), least, 10)


class Pacer:
    """Waits for each intended time as the strategy's wait implies (as the
    Rust side's harness::rate::Pacer): a spinning strategy spins on the
    clock; the others sleep until what their sleeps overslept of late
    before the time and spin the rest, or (`sleep_only`) only sleep.
    `busy` is the time spent pacing other than asleep."""

    def __init__(self, spin, sleep_only):
        self.spin, self.sleep_only = spin, sleep_only
        self.oversleep = 0 if sleep_only else FIRST_OVERSLEEP_NS
        self.busy = self.slept = 0
        if not spin:
            try:
                # PR_SET_TIMERSLACK: 1 ns, as the Rust side's sleeping senders.
                ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)
            except (OSError, AttributeError):
                pass

    def name(self):
        if self.spin:
            return "spin"
        return "sleep" if self.sleep_only else "sleep, then spin the timer's oversleep"

    def until(self, at):
        entered = now = now_ns()
        slept = 0
        while now < at:
            if not self.spin and at - now > self.oversleep:
                wake = at - self.oversleep
                time.sleep((wake - now) / 1e9)
                woke = now_ns()
                slept += woke - now
                if not self.sleep_only:
                    self.oversleep = min(max((self.oversleep * 7 + max(0, woke - wake) * 2) // 8, 1_000),
                                         MAX_OVERSLEEP_NS)
                now = woke
                continue
            now = now_ns()
        self.busy += now - entered - slept
        self.slept += slept
        return now

    def mark(self):
        return (cpu_ns(), now_ns(), self.busy, self.slept)

    def sending_cpu(self, m):
        """CPU time since mark `m` other than pacing: the CPU time in the
        share of the waking time not spent pacing (as the Rust side's)."""
        cpu = cpu_ns() - m[0]
        awake = now_ns() - m[1] - (self.slept - m[3])
        if awake <= 0:
            return cpu
        return int(cpu * (1 - min(1.0, (self.busy - m[2]) / awake)))


def pacer_for(kind):
    # A Queue's feeder thread needs the GIL that a spinning sender holds
    # (until the 5 ms switch interval takes it): its sender only sleeps.
    return Pacer(kind == "py-shared-memory", kind in ("py-queue", "py-queue-bounded", "py-manager-queue"))


def schedule(warm, total, unpaced):
    """Message (or call-pair) numbers from 0: `total` of them when given,
    else the warm-up and then as many as `unpaced` (a `measured` budget)
    yields."""
    i = 0
    while (total is None or i < total) and (unpaced is None or i < warm or next(unpaced, None) is not None):
        yield i
        i += 1


def role_pace(end, codec, a):
    """The open-loop sender: message i at t0 + i * period (all at once when
    unpaced), never waiting for the receiver. Its lateness is its own (time
    blocked in a send is the channel's); its CPU leaves out the pacing."""
    rate = a["rate"]
    period = 1e9 / rate if rate else 0.0
    warm = a["warmup"]
    pacer = pacer_for(a["kind"])
    late = []
    n_total = warm + paced_count(a, rate) if rate else None
    unpaced = measured(a, warm, MIN_MESSAGES, 1.1) if not rate else None
    mark = pacer.mark()
    t0 = now_ns()
    free = t0
    sent_n = 0
    for i in schedule(warm, n_total, unpaced):
        if i == warm:
            mark = pacer.mark()
        at = t0 + int(i * period)
        sent = t0 if i == 0 else pacer.until(at)
        end.send(codec.make(i, sent))
        if rate and i >= warm:
            late.append(max(1, sent - max(at, free)))
        free = now_ns()
        sent_n = i + 1
    cpu = pacer.sending_cpu(mark)
    end.send(b"")
    return {"messages": sent_n - warm, "cpu_ns": cpu, "lateness": percentiles(late), "pace": pacer.name()}


def role_rclient(end, codec, a):
    """reqrep in open loop: this client's calls (set, then get) go out one
    every `period` whatever the server does, each timed from its intended
    time and from when it went out (as the Rust side's calls_paced)."""
    d = tcp_client(*end).get_dict() if a["kind"] == "py-basemanager-tcp" else end
    rate = a["rate"]
    period = 1e9 / rate if rate else 0.0
    pid, warm, key = a["id"], a["warmup"], f"client-{a['id']}"
    pacer = pacer_for(a["kind"])
    # Pairs of calls: a count's (tests), or this client's share of the
    # point's calls (as harness::rate: the budget's worth at the rate
    # offered in all).
    clients = a.get("clients", 1)
    if a.get("count"):
        pairs = warm + max(1, a["count"] // 2)
    elif rate:
        pairs = warm + max(1, paced_count(a, rate * clients) // (2 * clients))
    else:
        pairs = None
    unpaced = measured(a, warm, 100) if pairs is None else None
    corrected, uncorrected, late, marks = [], [], [], []
    mark, first = pacer.mark(), 0
    t0 = now_ns()
    free = t0
    for i in schedule(warm, pairs, unpaced):
        if i == warm:
            mark = pacer.mark()
        seq = tagged(pid, i)
        m = codec.make(seq)
        for k in (2 * i, 2 * i + 1):
            at = t0 + int(k * period)
            sent = pacer.until(at)
            if k == 2 * warm:
                first = sent
            if k % 2 == 0:
                d[key] = m
            else:
                codec.check(d[key], seq)
            done = now_ns()
            if i >= warm:
                intended = at if period else sent
                corrected.append(max(1, done - intended))
                uncorrected.append(max(1, done - sent))
                if period:
                    late.append(max(1, sent - max(at, free)))
                if len(corrected) % MARK_STEP == 0:
                    marks.append(done)
            free = done
    return {"messages": len(corrected), "first_ns": first, "last_ns": now_ns(), "samples": corrected,
            "uncorrected": uncorrected, "late": late, "cpu_ns": pacer.sending_cpu(mark),
            "marks": marks, "pace": pacer.name()}


def role_take(end, codec, a):
    """The open-loop receiver: every message checked, timed from its
    intended send time (corrected) and from its actual one."""
    rate = a["rate"]
    period = 1e9 / rate if rate else 0.0
    warm = a["warmup"]
    c0 = cpu_ns()
    corrected, uncorrected, lat_at, times = [], [], [], []
    t0, i = 0, 0
    while True:
        m = end.recv()
        if not m:
            break
        t = now_ns()
        ts = codec.check(m, i)
        if i == 0:
            t0 = ts
        if i == warm:
            c0 = cpu_ns()
        if i >= warm:
            intended = t0 + int(i * period) if period else ts
            corrected.append(max(1, t - intended))
            uncorrected.append(max(1, t - ts))
            lat_at.append((i - warm, t - intended))
            times.append(t)
        i += 1
    n = len(times)
    elapsed = times[-1] - times[0] if n else 0
    return {"messages": n, "elapsed_ns": elapsed, "latency": percentiles(corrected),
            "uncorrected": percentiles(uncorrected), "cpu_ns": cpu_ns() - c0,
            "measured_ns": elapsed, "hist": hist_pairs(corrected),
            "batches": batches_of(times[:-1], times[-1], lat_at) if n > 1 else []}


def growth(batches):
    """The corrected median of the last quarter of batches over the first's
    (as harness::rate)."""
    q = len(batches) // 4
    if q == 0:
        return None
    med = lambda part: sorted(b[0] for b in part)[len(part) // 2]  # noqa: E731
    first, last = med(batches[:q]), med(batches[-q:])
    return last / first if first > 0 else None


def role_produce(end, codec, a):
    pid, warm = a["id"], a["warmup"]
    for i in range(warm):
        end.send(codec.make(tagged(pid, i)))
    c0 = cpu_ns()
    stamped = codec.size >= STAMPED_SIZE
    n = 0
    for i in measured(a, warm, 100):
        end.send(codec.make(tagged(pid, i), now_ns() if stamped and i % STAMP_EVERY == 0 else 0))
        n += 1
    end.flush()
    return {"messages": warm + n, "cpu_ns": cpu_ns() - c0}


def role_consume(end, codec, a):
    c0 = cpu_ns()
    last_of = {}
    digest, n, first, last, samples, marks = 0, 0, 0, 0, [], []
    while True:
        m = end.recv()
        if not m:
            break
        t = now_ns()
        tag = codec.seq_of(m)
        ts = codec.check(m, tag)
        pid, i = tag >> PRODUCER_SHIFT, tag & ((1 << PRODUCER_SHIFT) - 1)
        if i <= last_of.get(pid, -1):
            raise CheckError(f"producer {pid}: message {i} after message {last_of[pid]} (reordered or duplicated)")
        last_of[pid] = i
        digest = (digest + mix64(tag)) & MASK
        if n == 0:
            first = t
        last = t
        n += 1
        if n % MARK_STEP == 0:
            marks.append(t)
        if ts:
            samples.append(t - ts)
    return {"messages": n, "digest": digest, "first_ns": first, "last_ns": last,
            "samples": samples, "cpu_ns": cpu_ns() - c0, "marks": marks}


class ListCalls:
    """reqrep-list: this client's own Manager().list(); a set is
    l.append(message), a get l[i], i the index the message went to."""

    def __init__(self, proxy):
        self.l, self.n = proxy, 0

    def set(self, m):
        self.l.append(m)
        self.n += 1

    def get(self):
        return self.l[self.n - 1]


class NamespaceCalls:
    """reqrep-namespace: the shared Namespace, an attribute per client."""

    def __init__(self, proxy, attr):
        self.ns, self.attr = proxy, attr

    def set(self, m):
        setattr(self.ns, self.attr, m)

    def get(self):
        return getattr(self.ns, self.attr)


class DictCalls:
    """reqrep: the manager's dict, a key per client."""

    def __init__(self, proxy, key):
        self.d, self.key = proxy, key

    def set(self, m):
        self.d[self.key] = m

    def get(self):
        return self.d[self.key]


class ValueCalls:
    """reqrep-value: this client's own Manager().Value('d'); a set is
    v.value = float(seq), a get v.value, which must be that float."""

    def __init__(self, proxy):
        self.v = proxy

    def set(self, m):
        self.v.value = m

    def get(self):
        return self.v.value


def role_client(end, codec, a):
    """reqrep and its variants: a write then a read of a manager's object
    (a dict, a list, a Namespace, a Value); each a call."""
    pid, warm, key = a["id"], a["warmup"], f"client-{a['id']}"
    kind = a["kind"]
    if kind == "py-basemanager-tcp":
        calls = DictCalls(tcp_client(*end).get_dict(), key)
    elif kind == "py-manager-list":
        calls = ListCalls(end)
    elif kind == "py-manager-namespace":
        calls = NamespaceCalls(end, f"client_{pid}")
    elif kind == "py-manager-value":
        calls = ValueCalls(end)
    else:
        calls = DictCalls(end, key)
    if kind == "py-manager-value":
        def make(seq):
            # A double: the sequence number itself, exact below 2**53 (half
            # more for the fault injected on request, which check catches).
            return float(seq) + (0.5 if seq == codec.corrupt_at else 0.0)

        def check(back, seq):
            if back != float(seq):
                raise CheckError(f"message {seq}: the value read back is {back!r}, not {float(seq)!r}")
    else:
        make, check = codec.make, codec.check

    for i in range(warm):
        seq = tagged(pid, i)
        calls.set(make(seq))
        check(calls.get(), seq)
    samples, marks = [], []
    c0 = cpu_ns()
    first = now_ns()
    for i in measured(a, warm, 100):
        seq = tagged(pid, i)
        m = make(seq)
        t0 = time.perf_counter_ns()
        calls.set(m)
        t1 = time.perf_counter_ns()
        back = calls.get()
        t2 = time.perf_counter_ns()
        check(back, seq)
        samples += [t1 - t0, t2 - t1]
        if len(samples) % MARK_STEP == 0:
            marks.append(now_ns())
    return {"messages": len(samples), "first_ns": first, "last_ns": now_ns(), "samples": samples,
            "cpu_ns": cpu_ns() - c0, "marks": marks}


def lose_one(flags, me, read, write):
    """The first increment of processes 0 and 1 when they bump a value
    without its lock, interleaved so that one is lost for certain (as the
    Rust side's sync::peer::lose_one): 0 reads, 1 makes a whole increment,
    0 writes what it read plus one. Left to the scheduler, a busy machine
    may run the two one after the other and lose nothing."""
    def until(i, what):
        end = time.monotonic() + 10
        while flags[i] == 0:
            if time.monotonic() > end:
                raise CheckError(f"the other process never {what}")
            time.sleep(0)
    if me == 0:
        x = read()
        flags[0] = 1
        until(1, "made its increment")
        write(x)
    elif me == 1:
        until(0, "read the value")
        write(read())
        flags[1] = 1


def role_incr(prims, codec, a):
    """lock-increment: take the primitive, add one to a shared counter
    (a plain read and write), give it back; each cycle timed."""
    kind, prim, counter, flags = prims
    forced = 0
    if a.get("no_lock") and kind == "py-array":
        # A fault injected on request: no exclusion, so increments get lost.
        raw = prim.get_obj()

        def cycle():
            for i in range(ARRAY_LEN):
                raw[i] += 1.0
        if flags is not None and a["id"] < 2:
            def write(x):
                for i in range(ARRAY_LEN):
                    raw[i] = x[i] + 1.0
            lose_one(flags, a["id"], lambda: raw[:], write)
            forced = 1
    elif a.get("no_lock"):
        target = prim.get_obj() if kind == "py-value" else counter

        def cycle():
            target.value += 1
        if flags is not None and a["id"] < 2:
            def write(x):
                target.value = x + 1
            lose_one(flags, a["id"], lambda: target.value, write)
            forced = 1
    elif kind == "py-value":
        def cycle():
            with prim.get_lock():
                prim.value += 1
    elif kind == "py-array":
        raw = prim.get_obj()  # index it under the lock taken once, not per element

        def cycle():
            with prim.get_lock():
                for i in range(ARRAY_LEN):
                    raw[i] += 1.0
    elif kind == "py-semaphore":
        def cycle():
            prim.acquire()
            counter.value += 1
            prim.release()
    elif kind == "py-rlock":
        def cycle():
            with prim:
                with prim:
                    counter.value += 1
    else:
        def cycle():
            with prim:
                counter.value += 1
    warm = a["warmup"]
    for _ in range(warm):
        cycle()
    samples = []
    c0 = cpu_ns()
    first = t = now_ns()
    for _ in measured(a, 0, 100):
        cycle()
        now = now_ns()
        samples.append(now - t)
        t = now
    return {"messages": len(samples), "total": forced + warm + len(samples), "first_ns": first,
            "last_ns": t, "samples": samples, "cpu_ns": cpu_ns() - c0}


def role_turn(prims, codec, a):
    """event-pingpong: side 0 writes its turn, sets `ping`, waits for `pong`;
    side 1 waits for `ping`, checks the turn, answers it and sets `pong`."""
    ping, pong, turns = prims
    me = a["id"]
    state = {"turn": 0}

    def wait(ev):
        if not ev.wait(30):
            raise CheckError("the other side never set its event")
        ev.clear()

    def cycle0():
        state["turn"] += 1
        t = state["turn"]
        turns[0] = t
        ping.set()
        wait(pong)
        if turns[1] != t:
            raise CheckError(f"turn {t}: the answer was for turn {turns[1]}")

    def cycle1():
        state["turn"] += 1
        t = state["turn"]
        wait(ping)
        if turns[0] != t:
            raise CheckError(f"turn {t}: got turn {turns[0]}")
        turns[1] = t
        pong.set()

    # Side 1 answers exactly as many turns as side 0 takes (told in `turns`).
    return timed_count(cycle0 if me == 0 else cycle1, a)


def timed_count(cycle, a):
    """Runs `cycle` warm-up times, then `a["turns"]` times timed: every
    process of the point the same number (a barrier needs them all)."""
    for _ in range(a["warmup"]):
        cycle()
    samples = []
    c0 = cpu_ns()
    first = t = now_ns()
    for _ in range(a["turns"]):
        cycle()
        now = now_ns()
        samples.append(now - t)
        t = now
    return {"messages": len(samples), "first_ns": first, "last_ns": t,
            "samples": samples, "cpu_ns": cpu_ns() - c0}


def role_handoff(prims, codec, a):
    """condition-handoff: the producer (id 0) waits for the slot to be
    empty, puts the next number in it and notifies; the consumer waits for
    it to be full, checks the number, empties it and notifies."""
    cond, slot = prims
    producer = a["id"] == 0
    state = {"next": 0}

    def cycle():
        state["next"] += 1
        n = state["next"]
        with cond:
            if producer:
                if not cond.wait_for(lambda: slot.value == 0, 30):
                    raise CheckError(f"item {n}: the slot was never emptied")
                slot.value = n
            else:
                if not cond.wait_for(lambda: slot.value != 0, 30):
                    raise CheckError(f"item {n} never came")
                if slot.value != n:
                    raise CheckError(f"item {n}: got item {slot.value}")
                slot.value = 0
            cond.notify()

    return timed_count(cycle, a)


def role_bar(prims, codec, a):
    """barrier-cycle: bump the shared counter under its lock, pass the
    barrier, check that all N of this generation are in and no one has
    passed the next."""
    barrier, counter = prims
    n = barrier.parties
    state = {"gen": 0}

    def cycle():
        with counter.get_lock():
            counter.value += 1
        barrier.wait(30)
        state["gen"] += 1
        g = state["gen"]
        c = counter.value
        if not n * g <= c < n * (g + 1):
            raise CheckError(f"generation {g}: the counter reads {c}, not {n * g} to {n * (g + 1) - 1}")

    return timed_count(cycle, a)


def role_jprod(prims, codec, a):
    """joinable, producer: rounds of JOIN_BATCH numbered items put, then
    join(); after each join every item put so far must be processed."""
    q, processed = prims
    state = {"next": 0}

    def rnd():
        n = state["next"]
        for i in range(n, n + JOIN_BATCH):
            q.put(i)
        n += JOIN_BATCH
        state["next"] = n
        q.join()
        if processed.value != n:
            raise CheckError(f"join returned with {processed.value} of {n} items processed")

    for _ in range(max(1, a["warmup"] // 10)):
        rnd()
    samples = []
    c0 = cpu_ns()
    first = t = now_ns()
    for _ in measured(a, 0, 100):
        rnd()
        now = now_ns()
        samples.append(now - t)
        t = now
    q.put(None)  # the end, for the consumer
    return {"messages": len(samples) * JOIN_BATCH, "total": state["next"], "first_ns": first,
            "last_ns": t, "samples": samples, "cpu_ns": cpu_ns() - c0}


def role_jcons(prims, codec, a):
    """joinable, consumer: gets each item, checks its number, counts it
    processed, then calls task_done(); None ends."""
    q, processed = prims
    n = 0
    c0 = cpu_ns()
    while True:
        x = q.get()
        if x is None:
            q.task_done()
            break
        if x != n:
            raise CheckError(f"item {n}: got item {x!r}")
        n += 1
        processed.value = n
        q.task_done()
    return {"messages": n, "first_ns": 0, "last_ns": 0, "samples": [], "cpu_ns": cpu_ns() - c0}


ROLES = {
    "pace": role_pace,
    "rclient": role_rclient,
    "take": role_take,
    "incr": role_incr,
    "handoff": role_handoff,
    "bar": role_bar,
    "jprod": role_jprod,
    "jcons": role_jcons,
    "turn": role_turn,
    "ping": role_ping,
    "echo": role_echo,
    "send": role_send,
    "recv": role_recv,
    "produce": role_produce,
    "consume": role_consume,
    "client": role_client,
}


# ---------------------------------------------------------------- coordinator


class PointFailed(Exception):
    pass


def run_peers(ctx, peers, deadline_s):
    """Starts (role, args) peers, lines them up, says go; returns reports in order."""
    go = ctx.Event()
    procs, ctls = [], []
    try:
        for role, args in peers:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=peer_main, args=(role, args, child, go), daemon=True)
            p.start()
            child.close()
            procs.append(p)
            ctls.append(parent)
        deadline = time.monotonic() + deadline_s
        for i, c in enumerate(ctls):
            if not c.poll(max(0.0, deadline - time.monotonic())):
                raise PointFailed(f"peer {i} ({peers[i][0]}) missed its deadline before ready")
            msg = c.recv()
            if msg != "ready":
                raise PointFailed(f"peer {i} ({peers[i][0]}): {msg.get('error', msg)}")
        go.set()
        return procs, ctls, deadline
    except BaseException:
        for p in procs:
            p.kill()
            p.join()
        raise


_early = {}
_taken = set()


def collect(procs, ctls, idx, deadline, peers):
    """Peer `idx`'s report. A peer that fails meanwhile ends the point at
    once, whichever it is (its partner may be waiting on it forever)."""

    def take(i):
        if i in _early:
            return _early.pop(i)
        try:
            return ctls[i].recv() if ctls[i].poll(0) else None
        except EOFError:
            code = procs[i].exitcode
            return {"error": f"exited with status {code} without a report"}

    while True:
        r = take(idx)
        if r is not None:
            break
        for j in range(len(ctls)):
            if j != idx and j not in _early and j not in _taken:
                other = take(j)
                if other is not None:
                    if other.get("error"):
                        _early.clear()
                        raise PointFailed(f"peer {j} ({peers[j][0]}): {other['error']}")
                    _early[j] = other
        if time.monotonic() >= deadline:
            _early.clear()
            raise PointFailed(f"peer {idx} ({peers[idx][0]}) missed its deadline")
        if not procs[idx].is_alive() and not ctls[idx].poll(0.05):
            _early.clear()
            code = procs[idx].exitcode
            raise PointFailed(f"peer {idx} ({peers[idx][0]}) exited with status {code} without a report")
        ctls[idx].poll(0.02)
    if r.get("error"):
        _early.clear()
        raise PointFailed(f"peer {idx} ({peers[idx][0]}): {r['error']}")
    _taken.add(idx)
    return r


def finish(procs):
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def point_record(o, kind, pattern, size, producers, consumers, wait, cpus):
    return {
        "transport": kind, "pattern": pattern, "msg_size": size,
        "producers": producers, "consumers": consumers, "wait": wait,
        "pinned": bool(cpus), "oversubscribed": False, "messages": 0, "elapsed_ns": 0,
        "validated": False, "status": "failed", "error": None, "latency_ns": None, "throughput": None,
        "cpu_ns_per_msg": None, "batched_mean_ns": None, "harness_ns_per_msg": None,
        "cpus": cpus,
    }


def harness_cost(size):
    """The script's own cost to make and check one message (calibration)."""
    c = Codec(size)
    n = max(20, min(2000, (4 << 20) // size))
    t0 = time.perf_counter_ns()
    for i in range(n):
        c.check(c.make(i, 1), i)
    return (time.perf_counter_ns() - t0) / n


def _hello(conn, value):
    """A started process's first message: its number, 8 bytes."""
    conn.send_bytes(value.to_bytes(8, "little"))
    conn.close()


def _burn(ns):
    """Keeps this thread busy for `ns` of its own CPU time."""
    if ns:
        t0 = time.thread_time_ns()
        while time.thread_time_ns() - t0 < ns:
            pass


def _pool_task(task):
    """A task: check it, do its work, answer with its number and send time."""
    m, work_ns = task
    codec = _pool_codec()
    seq = codec.seq_of(m)
    ts = codec.check(m, seq)
    _burn(work_ns)
    return codec.make(seq, ts)


_codec_cache = []


def _pool_codec():
    if not _codec_cache:
        _codec_cache.append(Codec(POOL_TASK))
    return _codec_cache[0]


def _pool_mgr_worker(address, authkey, work_ns, ctl):
    """A BaseManager farm's worker: tasks until None, each answered."""
    try:
        m = tcp_client(address, authkey)
        tasks, results = m.get_queue("pool-tasks"), m.get_queue("pool-results")
        n = 0
        c0 = cpu_ns()
        while True:
            t = tasks.get()
            if t is None:
                break
            results.put(_pool_task((t, work_ns)))
            n += 1
        ctl.send({"messages": n, "cpu_ns": cpu_ns() - c0})
    except BaseException as e:  # noqa: BLE001 - reported to the coordinator
        ctl.send({"error": f"{type(e).__name__}: {e}"})


def run_pool_point(ctx, o, rec, kind, pattern, workers, far=None):
    """pool / pool-cpu: N numbered tasks through W workers, every answer
    checked and every number seen exactly once. `far`: the second host a
    BaseManager farm's server runs on (the master and the workers reach
    it from here, as clients of a server on another machine)."""
    rec["pinned"] = False
    rec["cpus"] = []
    rec["oversubscribed"] = workers + 1 > len(o.cpus)
    work_ns = POOL_WORK_NS if pattern == "pool-cpu" else 0
    n = o.count or ((2000 if o.profile == "quick" else 5000) // (5 if work_ns else 1))
    codec = _pool_codec()
    seen = bytearray(n)
    samples = []

    def take(m, now):
        seq = codec.seq_of(m)
        ts = codec.check(m, seq)
        if seq >= n:
            raise CheckError(f"a result for task {seq}, which was never sent")
        if seen[seq]:
            raise CheckError(f"task {seq} came back twice")
        seen[seq] = 1
        if now is not None:
            samples.append(now - ts)

    cleanup = []
    c0 = cpu_ns()
    try:
        if kind == "py-basemanager-pool":
            authkey = secrets.token_bytes(32)
            if far:
                m = tcp_client(start_far_server(far, authkey, cleanup), authkey)
            else:
                m = TcpManager(address=("127.0.0.1", 0), authkey=authkey, ctx=ctx)
                m.start()
                cleanup.append(m.shutdown)
            tasks, results = m.get_queue("pool-tasks"), m.get_queue("pool-results")
            procs, ctls = [], []
            for _ in range(workers):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_pool_mgr_worker, args=(m.address, authkey, work_ns, child),
                                daemon=True)
                p.start()
                child.close()
                procs.append(p)
                ctls.append(parent)

            def stop_workers():
                for p in procs:
                    if p.is_alive():
                        p.kill()
                    p.join()

            cleanup.append(stop_workers)
            sent = got = 0
            window = POOL_WINDOW * workers
            first = now_ns()
            while got < n:
                while sent < n and sent - got < window:
                    tasks.put(codec.make(sent, now_ns()))
                    sent += 1
                take(results.get(timeout=o.deadline), now_ns())
                got += 1
            last = now_ns()
            for _ in procs:
                tasks.put(None)
            done = 0
            for i, c in enumerate(ctls):
                if not c.poll(o.deadline):
                    raise PointFailed(f"worker {i} missed its deadline")
                r = c.recv()
                if r.get("error"):
                    raise PointFailed(f"worker {i}: {r['error']}")
                done += r["messages"]
            for p in procs:
                p.join(o.deadline)
            if done != n:
                raise PointFailed(f"the workers did {done} tasks where {n} were sent")
        else:
            with ctx.Pool(workers) as pool:
                pool.map(_pool_task, [(codec.make(i), 0) for i in range(workers * 2)])  # start-up
                if kind == "py-pool-apply-async":
                    first = now_ns()

                    def done_cb(m):
                        samples.append(now_ns() - codec.check(m, codec.seq_of(m)))

                    pending = [pool.apply_async(_pool_task, ((codec.make(i, now_ns()), work_ns),),
                                                callback=done_cb) for i in range(n)]
                    out = [r.get(o.deadline) for r in pending]
                    last = now_ns()
                    for m in out:
                        take(m, None)
                else:
                    chunk = 1 if kind == "py-pool-map-chunk1" else None
                    first = now_ns()
                    tasks = [(codec.make(i, now_ns()), work_ns) for i in range(n)]
                    out = pool.map(_pool_task, tasks, chunksize=chunk)
                    last = now_ns()
                    # map hands every result back at once: no per-task latency.
                    for m in out:
                        take(m, None)
        if not all(seen):
            raise PointFailed(f"task {seen.index(0)} never came back")
        per_s = n * 1e9 / max(1, last - first)
        rec.update(validated=True, status="ok", messages=n, elapsed_ns=last - first,
                   latency_ns=percentiles(samples) if samples else None,
                   throughput={"msgs_per_s": per_s, "bytes_per_s": per_s * POOL_TASK},
                   cpu_ns_per_msg=(cpu_ns() - c0) / n)
    except (PointFailed, CheckError) as e:
        rec.update(validated=False, status="failed", error=str(e))
    finally:
        for f in reversed(cleanup):
            f()
    return rec


def run_startup_point(o, rec, kind):
    """startup: from Process(...).start() to the child's first message (its
    number, checked), for one start method; the child is joined untimed."""
    ctx = mp.get_context(kind[len("py-start-"):])
    rec["harness_ns_per_msg"] = None
    warm = 2  # forkserver starts its server on first use
    want = min(o.count, STARTUP_MAX_COUNT) if o.count else None
    samples = []
    c0 = cpu_ns()
    first = None
    end = None
    i = 0
    try:
        while True:
            done = i - warm
            if done == 0:
                first = now_ns()
                end = time.perf_counter_ns() + int(o.budget * 1e9)
            if want is not None and done >= want:
                break
            if want is None and done >= 5 and (done >= 1000 or time.perf_counter_ns() >= end):
                break
            r, w = ctx.Pipe(duplex=False)
            t0 = now_ns()
            p = ctx.Process(target=_hello, args=(w, i + 1), daemon=True)
            p.start()
            try:
                if not r.poll(o.deadline):
                    raise PointFailed(f"start {i}: no message within {o.deadline} s")
                got = int.from_bytes(r.recv_bytes(), "little")
                t1 = now_ns()
            finally:
                w.close()
                p.join(o.deadline)
                if p.is_alive():
                    p.kill()
                    p.join()
                r.close()
            if p.exitcode != 0:
                raise PointFailed(f"start {i}: the child exited with {p.exitcode}")
            if got != i + 1:
                raise PointFailed(f"start {i}: the child wrote {got}, not {i + 1}")
            if done >= 0:
                samples.append(t1 - t0)
            i += 1
        elapsed = now_ns() - first
        per_s = len(samples) * 1e9 / max(1, elapsed)
        rec.update(validated=True, status="ok", messages=len(samples), elapsed_ns=elapsed,
                   latency_ns=percentiles(samples),
                   throughput={"msgs_per_s": per_s, "bytes_per_s": per_s * 8},
                   cpu_ns_per_msg=(cpu_ns() - c0) / max(1, len(samples)))
    except PointFailed as e:
        rec.update(validated=False, status="failed", error=str(e))
    return rec


def run_point(ctx, o, kind, pattern, size, n_prod, n_cons, load=None, capacity=None, hosts=None):
    """Measures one point; `hosts`: with the strategy's server on the
    second host (`o.far`), which the record names."""
    helpers = 1 if kind.startswith("py-manager") or kind == "py-basemanager-tcp" else 0
    n_peers = n_prod if pattern in CALLS + ("reqrep-rate",) + SYNC_PATTERNS else n_prod + n_cons
    busy = n_peers + helpers
    cpus_all = o.cpus
    pinned = (not o.no_pin) and n_peers <= len(cpus_all)
    cpus = cpus_all[:n_peers] if pinned else []
    wait = "spin" if kind == "py-shared-memory" else "kernel"
    rec = point_record(o, kind, pattern, size, n_prod, n_cons, wait, cpus)
    rec["oversubscribed"] = busy > len(cpus_all)
    rec["harness_ns_per_msg"] = harness_cost(size)
    if hosts:
        # Only a BaseManager's server goes to the second host.
        rec["hosts"] = hosts
        rec["far_side"] = "server"
    base = {
        "size": size, "warmup": o.warmup, "budget": o.budget, "count": o.count,
        "max_iters": o.max_iters(pattern, size), "corrupt_at": o.corrupt_at, "kind": kind,
        "no_lock": o.no_lock,
    }
    cpu_of = lambda i: cpus[i] if cpus else None  # noqa: E731
    if pattern == "startup":
        rec["pinned"] = False
        return run_startup_point(o, rec, kind)
    if pattern in ("pool", "pool-cpu"):
        return run_pool_point(ctx, o, rec, kind, pattern, n_cons, o.far if hosts else None)
    if pattern in SYNC_PATTERNS:
        return run_sync_point(ctx, o, rec, base, kind, pattern, n_prod, cpu_of)
    if pattern in ("rate", "reqrep-rate"):
        rec["load"] = load
        rec["capacity_per_s"] = capacity
        how, v = parse_load(load)
        rate = {"max": None, "abs": v, "pct": capacity * v / 100 if capacity and v else None}[how]
        if how == "pct" and capacity is None:
            rec.update(status="skipped", error="its strategy's capacity (the unpaced point) was not measured in this run")
            return rec
        if how == "abs" and capacity is not None and v > capacity * MAX_OVERLOAD:
            rec.update(status="skipped", error=f"{load} per second is past {MAX_OVERLOAD:.1f}× the capacity "
                       f"of {capacity:.0f} per second measured in this run")
            return rec
        if size < STAMPED_SIZE:
            rec.update(status="skipped", error=f"open-loop messages carry their send time: {STAMPED_SIZE} B or more")
            return rec
        rec["offered_per_s"] = rate
        base = dict(base, rate=rate or 0.0)
    ch = Channel(ctx, kind, size, o.far if hosts else None)
    procs = []
    try:
        if pattern == "reqrep-rate":
            ends = [ch.tcp if kind == "py-basemanager-tcp" else ch.dict for _ in range(n_prod)]
            share = dict(base, rate=(rate or 0.0) / n_prod, clients=n_prod)
            peers = [("rclient", dict(share, end=ends[i], id=i, cpu=cpu_of(i))) for i in range(n_prod)]
            procs, ctls, deadline = run_peers(ctx, peers, o.deadline)
            got = [collect(procs, ctls, i, deadline, peers) for i in range(n_prod)]
            calls = sum(r["messages"] for r in got)
            first = min(r["first_ns"] for r in got)
            last = max(r["last_ns"] for r in got)
            per_s = calls * 1e9 / max(1, last - first)
            cpu = sum(r["cpu_ns"] for r in got)
            rec.update(
                messages=calls, elapsed_ns=last - first, measured_ns=last - first,
                latency_ns=percentiles([x for r in got for x in r["samples"]]),
                latency_pairs=hist_pairs([x for r in got for x in r["samples"]]),
                batches=merged_batches(first, [(MARK_STEP, r["marks"]) for r in got]),
                cpu_ns_per_msg=cpu / max(1, calls), achieved_per_s=per_s,
                latency_uncorrected_ns=percentiles([x for r in got for x in r["uncorrected"]]),
                pace=got[0]["pace"], peer_cpu_ns_per_msg=[cpu / max(1, calls), 0.0])
            late = [x for r in got for x in r["late"]]
            if late:
                rec["sender_lateness_ns"] = percentiles(late)
        elif pattern == "rate":
            peers = [
                ("pace", dict(base, end=ch.ends[0], cpu=cpu_of(0))),
                ("take", dict(base, end=ch.ends[1], cpu=cpu_of(1))),
            ]
            procs, ctls, deadline = run_peers(ctx, peers, o.deadline)
            ra = collect(procs, ctls, 0, deadline, peers)
            rb = collect(procs, ctls, 1, deadline, peers)
            if rb["messages"] != ra["messages"]:
                raise PointFailed(f"{ra['messages']} messages sent, {rb['messages']} received")
            n = max(1, rb["messages"])
            per_s = max(0, rb["messages"] - 1) * 1e9 / max(1, rb["elapsed_ns"])
            rec.update(
                messages=rb["messages"], elapsed_ns=rb["elapsed_ns"], latency_ns=rb["latency"],
                measured_ns=rb["measured_ns"], batches=rb["batches"], latency_pairs=rb["hist"],
                cpu_ns_per_msg=(ra["cpu_ns"] + rb["cpu_ns"]) / n, achieved_per_s=per_s,
                latency_uncorrected_ns=rb["uncorrected"], pace=ra["pace"],
                peer_cpu_ns_per_msg=[ra["cpu_ns"] / n, rb["cpu_ns"] / n],
                latency_growth=growth(rb["batches"]))
            if ra["lateness"]:
                rec["sender_lateness_ns"] = ra["lateness"]
        elif pattern in ("pingpong", "stream"):
            roles = ("ping", "echo") if pattern == "pingpong" else ("send", "recv")
            peers = [
                (roles[0], dict(base, end=ch.ends[0], cpu=cpu_of(0))),
                (roles[1], dict(base, end=ch.ends[1], cpu=cpu_of(1))),
            ]
            procs, ctls, deadline = run_peers(ctx, peers, o.deadline)
            ra = collect(procs, ctls, 0, deadline, peers)
            rb = collect(procs, ctls, 1, deadline, peers)
            measured_side = ra if pattern == "pingpong" else rb
            rec["measured_ns"] = measured_side["measured_ns"]
            rec["batches"] = measured_side["batches"]
            rec["latency_pairs"] = measured_side["hist"]
            if pattern == "pingpong":
                rec["messages"] = ra["messages"]
                rec["elapsed_ns"] = ra["elapsed_ns"]
                rec["latency_ns"] = ra["latency"]
                per_s = ra["messages"] * 1e9 / max(1, ra["elapsed_ns"])
                rec["cpu_ns_per_msg"] = (ra["cpu_ns"] + rb["cpu_ns"]) / max(1, 2 * ra["messages"])
            else:
                if rb["messages"] != ra["messages"]:
                    raise PointFailed(f"{ra['messages']} messages sent, {rb['messages']} received")
                rec["messages"] = rb["intervals"]
                rec["elapsed_ns"] = rb["elapsed_ns"]
                rec["latency_ns"] = rb["latency"]
                per_s = rb["intervals"] * 1e9 / max(1, rb["elapsed_ns"])
                rec["cpu_ns_per_msg"] = (ra["cpu_ns"] + rb["cpu_ns"]) / max(1, rb["messages"])
        elif pattern == "mpmc":
            if kind == "py-basemanager-tcp":
                address, authkey = ch.tcp
                prod_end = lambda: End(kind, (address, authkey, "ab", None), None)  # noqa: E731
                cons_end = lambda: End(kind, (address, authkey, None, "ab"), None)  # noqa: E731
            else:
                prod_end = lambda: End(kind, ch.shared, None)  # noqa: E731
                cons_end = lambda: End(kind, None, ch.shared)  # noqa: E731
            peers = [("consume", dict(base, end=cons_end(), cpu=cpu_of(n_prod + j))) for j in range(n_cons)]
            peers += [("produce", dict(base, end=prod_end(), id=i, cpu=cpu_of(i))) for i in range(n_prod)]
            procs, ctls, deadline = run_peers(ctx, peers, o.deadline)
            sent = [collect(procs, ctls, n_cons + i, deadline, peers) for i in range(n_prod)]
            # Every producer is done: one end-of-stream per consumer.
            closer = prod_end().open()
            for _ in range(n_cons):
                closer.send(b"")
            got = [collect(procs, ctls, j, deadline, peers) for j in range(n_cons)]
            expected = 0
            for i, r in enumerate(sent):
                for k in range(r["messages"]):
                    expected = (expected + mix64(tagged(i, k))) & MASK
            total_sent = sum(r["messages"] for r in sent)
            received = sum(r["messages"] for r in got)
            if received != total_sent:
                raise PointFailed(f"consumers received {received} messages where {total_sent} were sent (lost or duplicated)")
            digest = 0
            for r in got:
                digest = (digest + r["digest"]) & MASK
            if digest != expected:
                raise PointFailed("every message count is right but not every message arrived exactly once")
            first = min(r["first_ns"] for r in got if r["messages"])
            last = max(r["last_ns"] for r in got)
            rec["messages"] = received
            rec["elapsed_ns"] = last - first
            rec["latency_ns"] = percentiles([s for r in got for s in r["samples"]])
            rec["batches"] = merged_batches(first, [(MARK_STEP, r["marks"]) for r in got])
            per_s = max(0, received - 1) * 1e9 / max(1, last - first)
            rec["cpu_ns_per_msg"] = sum(r["cpu_ns"] for r in sent + got) / max(1, received)
        elif pattern in CALLS:
            if kind == "py-basemanager-tcp":
                ends = [ch.tcp for _ in range(n_prod)]
            elif kind == "py-manager-list":
                ends = [ch.manager.list() for _ in range(n_prod)]
            elif kind == "py-manager-namespace":
                ends = [ch.namespace for _ in range(n_prod)]
            elif kind == "py-manager-value":
                ends = [ch.manager.Value("d", 0.0) for _ in range(n_prod)]
            else:
                ends = [ch.dict for _ in range(n_prod)]
            peers = [("client", dict(base, end=ends[i], id=i, cpu=cpu_of(i))) for i in range(n_prod)]
            procs, ctls, deadline = run_peers(ctx, peers, o.deadline)
            got = [collect(procs, ctls, i, deadline, peers) for i in range(n_prod)]
            calls = sum(r["messages"] for r in got)
            first = min(r["first_ns"] for r in got)
            last = max(r["last_ns"] for r in got)
            rec["messages"] = calls
            rec["elapsed_ns"] = last - first
            rec["latency_ns"] = percentiles([s for r in got for s in r["samples"]])
            rec["batches"] = merged_batches(first, [(MARK_STEP, r["marks"]) for r in got])
            per_s = calls * 1e9 / max(1, last - first)
            rec["cpu_ns_per_msg"] = sum(r["cpu_ns"] for r in got) / max(1, calls)
        else:
            raise PointFailed(f"unknown pattern {pattern}")
        rec["validated"] = True
        rec["status"] = "ok"
        if pattern == "mpmc" or pattern in CALLS:
            # Shared channels measure for the budget too: their timed part
            # is first to last message received (or call answered).
            rec["measured_ns"] = rec["elapsed_ns"]
        rec["throughput"] = {"msgs_per_s": per_s, "bytes_per_s": per_s * size}
        if rec["latency_ns"] is None and pattern != "stream":
            raise PointFailed("no latency samples")
    except PointFailed as e:
        rec.update(validated=False, status="failed", error=str(e), latency_ns=None, throughput=None,
                   cpu_ns_per_msg=None, batched_mean_ns=None)
    finally:
        _early.clear()
        _taken.clear()
        for p in procs:
            if p.is_alive():
                p.kill()
        finish(procs)
        ch.close()
    return rec


def run_sync_point(ctx, o, rec, base, kind, pattern, procs, cpu_of):
    """lock-increment and rlock-increment (procs processes, the counter
    checked exact), event-pingpong (two processes, every turn checked),
    condition-handoff (two, every item checked), barrier-cycle (procs,
    every generation checked) or joinable."""
    rec["msg_size"] = 8 * ARRAY_LEN if kind == "py-array" else 8
    rec["harness_ns_per_msg"] = None
    procs_ = []
    try:
        if pattern in ("lock-increment", "rlock-increment"):
            counter = ctx.RawValue("q", 0)
            if kind == "py-rlock":
                prim = ctx.RLock()
            elif kind == "py-value":
                prim = ctx.Value("q", 0)
                counter = prim
            elif kind == "py-array":
                prim = ctx.Array("d", ARRAY_LEN)
                counter = prim
            elif kind == "py-semaphore":
                prim = ctx.Semaphore(1)
            else:
                prim = ctx.Lock()
            # Without the lock, two processes lose one increment for certain.
            flags = ctx.RawArray("q", 2) if o.no_lock and procs >= 2 else None
            own = counter if kind not in ("py-value", "py-array") else None
            peers = [("incr", dict(base, end=(kind, prim, own, flags), id=i, cpu=cpu_of(i)))
                     for i in range(procs)]
        elif pattern == "condition-handoff":
            turns = o.count or int(o.budget * 10_000)
            cond, slot = ctx.Condition(), ctx.RawValue("q", 0)
            peers = [("handoff", dict(base, end=(cond, slot), id=i, turns=turns, cpu=cpu_of(i)))
                     for i in range(2)]
        elif pattern == "barrier-cycle":
            turns = o.count or int(o.budget * 4_000 / procs)
            barrier, counter = ctx.Barrier(procs), ctx.Value("q", 0)
            peers = [("bar", dict(base, end=(barrier, counter), id=i, turns=turns, cpu=cpu_of(i)))
                     for i in range(procs)]
        elif pattern == "joinable":
            q, processed = ctx.JoinableQueue(), ctx.RawValue("q", 0)
            peers = [("jprod", dict(base, end=(q, processed), id=0, cpu=cpu_of(0))),
                     ("jcons", dict(base, end=(q, processed), id=1, cpu=cpu_of(1)))]
        else:
            turns = o.count or int(o.budget * 10_000)
            ping, pong, data = ctx.Event(), ctx.Event(), ctx.RawArray("q", 2)
            peers = [("turn", dict(base, end=(ping, pong, data), id=i, turns=turns, cpu=cpu_of(i)))
                     for i in range(2)]
        procs_, ctls, deadline = run_peers(ctx, peers, o.deadline)
        got = [collect(procs_, ctls, i, deadline, peers) for i in range(len(peers))]
        if pattern in ("lock-increment", "rlock-increment"):
            want = sum(r["total"] for r in got)
            if kind == "py-array":
                value = next((x for x in counter[:] if x != want), want)
            else:
                value = counter.value
            if value != want:
                raise PointFailed(f"the counter ended at {value}, not {want}: increments were lost")
            cycles = sum(r["messages"] for r in got)
            samples = [s for r in got for s in r["samples"]]
        elif pattern == "condition-handoff":
            if got[1]["messages"] != got[0]["messages"]:
                raise PointFailed(f"the consumer took {got[1]['messages']} items "
                                  f"where {got[0]['messages']} were handed over")
            cycles = got[0]["messages"]
            samples = got[0]["samples"]
            got = got[:1]
        elif pattern == "barrier-cycle":
            want = procs * (base["warmup"] + got[0]["messages"])
            if counter.value != want:
                raise PointFailed(f"the barrier's counter ended at {counter.value}, not {want}")
            cycles = got[0]["messages"]
            samples = [s for r in got for s in r["samples"]]
        elif pattern == "joinable":
            if got[1]["messages"] != got[0]["total"]:
                raise PointFailed(f"the consumer processed {got[1]['messages']} items "
                                  f"where {got[0]['total']} were put")
            cycles = got[0]["messages"]
            samples = got[0]["samples"]
            got = got[:1]  # the consumer keeps no times
        else:
            cycles = got[0]["messages"]
            samples = got[0]["samples"]
        first = min(r["first_ns"] for r in got)
        last = max(r["last_ns"] for r in got)
        per_s = cycles * 1e9 / max(1, last - first)
        rec.update(validated=True, status="ok", messages=cycles, elapsed_ns=last - first,
                   latency_ns=percentiles(samples),
                   throughput={"msgs_per_s": per_s, "bytes_per_s": per_s * 8},
                   cpu_ns_per_msg=sum(r["cpu_ns"] for r in got) / max(1, cycles))
    except PointFailed as e:
        rec.update(validated=False, status="failed", error=str(e))
    finally:
        _early.clear()
        _taken.clear()
        for p in procs_:
            if p.is_alive():
                p.kill()
        finish(procs_)
    return rec


def parse_procs(s):
    """`1x1,1x2` as [(1, 1), (1, 2)]."""
    try:
        pairs = [tuple(int(n) for n in p.split("x")) for p in s.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"process counts as PxC, comma-separated: {s!r}")
    return pairs


class Opts:
    def __init__(self, a):
        sizes, multi_sizes, counts, budget = PROFILES[a.profile]
        self.profile = a.profile
        self.sizes = a.sizes or sizes
        self.multi_sizes = a.sizes or multi_sizes
        self.counts = counts
        self.budget = budget
        self.count = a.count
        self.warmup = min(100, a.count) if a.count else 100
        self.corrupt_at = a.corrupt_at
        self.no_lock = a.no_lock
        self.no_pin = a.no_pin
        self.deadline = a.deadline
        self.cpus = sorted(os.sched_getaffinity(0)) if not a.cpus else a.cpus
        self.rate_sizes = a.sizes
        self.loads = [x for x in (a.rates or RATE_LOADS[a.profile]) if x != "max"]
        self.far = json.loads(a.far) if a.far else None
        self.procs = a.procs

    def max_iters(self, pattern, size):
        # The time budget bounds a point; this only stops a runaway one.
        if pattern in CALLS:
            return 20_000
        return 50_000_000


def plan(o, transports, patterns):
    pts = []
    for t in transports:
        for p in patterns:
            if p not in CAN[t]:
                continue
            first = len(pts)
            if p in ("rate", "reqrep-rate"):
                sizes = [s for s in (o.rate_sizes or [RATE_SIZE]) if s >= STAMPED_SIZE]
                n = 1 if p == "rate" else RATE_CLIENTS[o.profile]
                pts += [(t, p, s, n, 1, load, None) for s in sizes for load in ["max"] + o.loads]
            elif p in ("pingpong", "stream"):
                pts += [(t, p, s, 1, 1) for s in o.sizes]
            elif p == "mpmc":
                pts += [(t, p, s, n, n) for s in o.multi_sizes for n in o.counts]
            elif p in ("lock-increment", "rlock-increment"):
                size = 8 * ARRAY_LEN if t == "py-array" else 8
                pts += [(t, p, size, n, 1) for n in o.counts if n <= 4]
            elif p == "barrier-cycle":
                pts += [(t, p, 8, n, 1) for n in o.counts if n >= 2]
            elif p == "reqrep-value":
                if not o.rate_sizes or VALUE_SIZE in o.rate_sizes:
                    pts += [(t, p, VALUE_SIZE, n, 1) for n in o.counts]
            elif p in ("event-pingpong", "joinable", "condition-handoff"):
                pts += [(t, p, 8, 2, 1)]
            elif p == "startup":
                pts += [(t, p, 8, 1, 1)]
            elif p in ("pool", "pool-cpu"):
                pts += [(t, p, POOL_TASK, 1, w) for w in o.counts]
            else:
                pts += [(t, p, s, n, 1) for s in o.multi_sizes for n in o.counts]
            # Each right after its loopback twin: with the server on the second host.
            if o.far and t in FAR_SERVED:
                mine = pts[first:]
                del pts[first:]
                for pt in mine:
                    pts += [pt, pt + (None, o.far["what"])]
    # Every point as (transport, pattern, size, producers, consumers, load, hosts).
    # --procs: only the points of those process counts (producers x consumers).
    if o.procs:
        pts = [pt for pt in pts if (pt[3], pt[4]) in o.procs]
    return [pt + (None,) * (7 - len(pt)) for pt in pts]


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    pretty = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "os": f"{platform.system()} {pretty}".strip(),
        "rustc": f"CPython {platform.python_version()}",
        "git_commit": "-",
    }


def write_atomic(path, text):
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def human(p):
    if p.get("status") == "skipped":
        return "skipped: " + p["error"]
    if p.get("error"):
        return "FAILED: " + p["error"]
    t = p["throughput"]["msgs_per_s"]
    lat = p["latency_ns"]
    l = f"p50 {lat['p50'] / 1e3:9.2f} µs" if lat else "p50         -"
    return f"{l}  {t / 1e3:10.1f} k/s"


def watch_parent(ppid):
    """Ends the script and every worker it started once its parent is gone.

    ipcbench, the parent, ends the script through the stop file; a parent
    that was killed outright cannot, and the script would go on measuring
    for nobody, its workers with it. Checked five times a second from a
    thread of its own (a worker forked from the main thread does not carry
    it)."""
    while os.getppid() == ppid:
        time.sleep(0.2)
    try:
        print("python: the parent process is gone; stopping", file=sys.stderr, flush=True)
    except OSError:
        pass  # its end of the pipe went with it
    for _ in range(5):
        try:
            children = mp.active_children()
            break
        except RuntimeError:  # the main thread changed the set meanwhile
            children = []
    for c in children:
        c.kill()
    os._exit(3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default")
    ap.add_argument("--output", help="results file to write (JSON); required")
    ap.add_argument("--transports", type=lambda s: s.split(","), default=None)
    ap.add_argument("--patterns", type=lambda s: s.split(","), default=None)
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--count", type=int, default=None, help="exactly this many messages per peer (tests)")
    ap.add_argument("--start-method", choices=["fork", "spawn", "forkserver"], default="fork")
    ap.add_argument("--cpus", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--deadline", type=float, default=DEADLINE_S, help="seconds a point may take")
    ap.add_argument("--corrupt-at", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-lock", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=parse_procs, default=None,
                    help="process counts, producers x consumers: 1x1,1x2,4x4")
    ap.add_argument("--rates", type=lambda s: s.split(","), default=None,
                    help="open-loop loads: max, 80%% (of the capacity), 10k (msgs/s)")
    ap.add_argument("--list", action="store_true", help="list the transports and exit")
    ap.add_argument("--plan", action="store_true",
                    help="print the points the options select, one a line, and exit")
    ap.add_argument("--far", default=None,
                    help="a second host, as JSON {prefix, addr, what, ipcbench}: py-basemanager-tcp's "
                         "pingpong and stream are measured again with its server there")
    ap.add_argument("--serve-basemanager", metavar="ADDR", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stop-file", default=None,
                    help="stop after the point in progress once this file exists")
    a = ap.parse_args(argv)
    if a.serve_basemanager:
        return serve_basemanager(a.serve_basemanager)
    if a.output is None:
        ap.error("the following arguments are required: --output")
    # ipcbench starts this script with SIGINT, SIGTERM and SIGHUP ignored,
    # so that a Ctrl-C at a terminal (sent to the whole process group) lets
    # the point in progress finish; ipcbench then asks, by the stop file,
    # that no other point start. SIGTERM is given back its default before
    # any worker starts: multiprocessing ends pools' and managers' processes
    # with it.
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if a.list:
        for k, v in TRANSPORTS.items():
            print(f"{k:<20} {v}")
        return 0
    transports = a.transports or list(TRANSPORTS)
    patterns = a.patterns or PATTERNS
    for t in transports:
        if t not in TRANSPORTS:
            ap.error(f"unknown transport {t!r}; known: {', '.join(TRANSPORTS)}")
    for p in patterns:
        if p not in PATTERNS:
            ap.error(f"unknown pattern {p!r}; known: {', '.join(PATTERNS)}")
    for r in a.rates or []:
        if parse_load(r) is None:
            ap.error(f"bad rate {r!r}: give msgs/s (500, 10k, 1M), a percentage of the capacity (80%), or max")
    for s in a.sizes or []:
        if s < MIN_SIZE:
            ap.error(f"message size {s} is below {MIN_SIZE} bytes")
    o = Opts(a)
    ctx = mp.get_context(a.start_method)
    points = plan(o, transports, patterns)
    if a.plan:
        for t, p, s, np_, nc, load, hosts in points:
            print(f"{t}\t{p}\t{s}\t{np_}\t{nc}\t{load or ''}\t{hosts or ''}")
        return 0
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = {
        "schema_version": SCHEMA_VERSION,
        "run_id": "py-" + started.replace("-", "").replace(":", "").rstrip("Z") + f"-{os.getpid()}",
        "started_at": started,
        "machine": machine(),
        "config": {
            "source": "python", "python": platform.python_version(),
            "start_method": a.start_method, "profile": a.profile,
            "seconds_per_point": o.budget, "count": a.count, "pin": not a.no_pin,
        },
        "points": [],
    }
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    failed = 0
    t0 = time.monotonic()
    capacities = {}
    for i, (t, p, s, np_, nc, load, hosts) in enumerate(points):
        rec = run_point(ctx, o, t, p, s, np_, nc, load, capacities.get((t, p, s)), hosts)
        if load == "max" and rec.get("status") == "ok":
            capacities[(t, p, s)] = rec["achieved_per_s"]
        run["points"].append(rec)
        failed += rec.get("status") == "failed" or (not rec["validated"] and rec.get("status") != "skipped")
        write_atomic(a.output, json.dumps(run, indent=1))
        c = f" {np_}x{nc}" if p in CALLS + ("mpmc", "lock-increment", "rlock-increment",
                                             "barrier-cycle", "pool", "pool-cpu") else ""
        c = f" {load}" if load else c
        t = f"{t} (2 hosts)" if hosts else t
        print(f"[{i + 1:>3}/{len(points)}] {t:<20} {p + c:<24} {s:>8} B  {human(rec)}",
              file=sys.stderr, flush=True)
        if a.stop_file and os.path.exists(a.stop_file):
            print(f"python: stopped after point {i + 1} of {len(points)}, as asked",
                  file=sys.stderr, flush=True)
            break
    print(f"python: {len(points)} points in {time.monotonic() - t0:.0f} s, {failed} failed; "
          f"results: {a.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
