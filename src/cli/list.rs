//! `ipcbench list`: every strategy, one name a line, with what it is.

use ipcbench::harness;
use ipcbench::transport::TransportKind;

/// The Python baseline's transports, as `ipcbench list` shows them.
const PY_DESCRIPTIONS: [(&str, &str); 21] = [
    ("py-pipe", "Pipe() with send_bytes/recv_bytes"),
    ("py-queue", "Queue(), unbounded"),
    ("py-queue-bounded", "Queue(maxsize=64)"),
    ("py-simplequeue", "SimpleQueue()"),
    ("py-manager-queue", "Manager().Queue() proxies"),
    ("py-manager-dict", "Manager().dict() proxies, set then get"),
    (
        "py-basemanager-tcp",
        "a BaseManager serving queues and a dict over TCP loopback, with an authkey",
    ),
    (
        "py-shared-memory",
        "shared_memory by hand: a slot per direction, a spinning flag",
    ),
    ("py-lock", "Lock() around an increment of a RawValue"),
    (
        "py-semaphore",
        "Semaphore(1) around an increment of a RawValue",
    ),
    ("py-value", "Value('q') incremented under its get_lock()"),
    (
        "py-array",
        "Array('d', 16), every element bumped under its get_lock()",
    ),
    ("py-event", "two Events handing a turn back and forth"),
    (
        "py-joinable-queue",
        "JoinableQueue(): 64 items put then join(), each got and task_done()",
    ),
    (
        "py-start-fork",
        "Process(...).start() with the fork start method, to its first message",
    ),
    (
        "py-start-forkserver",
        "Process(...).start() with forkserver, to its first message",
    ),
    (
        "py-start-spawn",
        "Process(...).start() with spawn, to its first message",
    ),
    ("py-pool-map", "Pool(W).map(task, tasks), default chunksize"),
    (
        "py-pool-map-chunk1",
        "Pool(W).map(task, tasks, chunksize=1)",
    ),
    (
        "py-pool-apply-async",
        "Pool(W).apply_async(task) for every task, then every get()",
    ),
    (
        "py-basemanager-pool",
        "BaseManager over TCP serving a task and a result queue to W workers",
    ),
];

/// Prints every strategy the suite measures, with a line on each.
pub fn list() {
    for k in TransportKind::ALL {
        println!("{:<19} {}", k.name(), k.description());
    }
    for p in harness::sync::Prim::ALL {
        println!("{:<19} {}", p.name(), p.description());
    }
    for m in harness::startup::Method::ALL {
        println!("{:<19} {}", m.name(), m.description());
    }
    for (name, what) in PY_DESCRIPTIONS {
        println!("{name:<19} Python multiprocessing: {what}");
    }
}
