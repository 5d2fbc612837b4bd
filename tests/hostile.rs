//! Hostile or corrupt shared memory: a second mapping of a ring's, a
//! queue's or a joinable queue's file (what another process sees) writes
//! garbage into its control words and data, thousands of times, while this
//! side keeps sending and receiving with short timeouts. Nothing may read
//! or write out of bounds (the test process would crash), allocate past
//! the structure's limit, or wait past its timeout: each call returns a
//! message, a timeout, or an error that says the memory is corrupt.
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use ipcbench::shm::{JoinableQueue, Queue, QueueError, Ring, RingError, Wait, unique_name};

/// Rounds of garbage per structure.
const ROUNDS: u64 = 20_000;
/// The timeout of every call.
const T: Option<Duration> = Some(Duration::from_micros(200));
/// The longest any call may take before it counts as hung: a hang
/// detector (a call's timeout is 200 µs), not a speed.
const BOUND: Duration = Duration::from_secs(10);

/// A second read-write mapping of a /dev/shm file.
struct Scribbler {
    ptr: *mut u8,
    len: usize,
}

impl Scribbler {
    fn new(name: &str) -> Scribbler {
        let path = std::ffi::CString::new(format!("/dev/shm/{name}")).unwrap();
        // SAFETY: opening, sizing and mapping a file we created; the map is
        // unmapped on drop.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            assert!(fd >= 0, "open {name}");
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(fd, &mut st), 0);
            let len = st.st_size as usize;
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            libc::close(fd);
            assert_ne!(ptr, libc::MAP_FAILED);
            Scribbler {
                ptr: ptr as *mut u8,
                len,
            }
        }
    }

    /// Writes a garbage word: near the start (header and control block)
    /// half of the time, anywhere otherwise; sometimes a small number,
    /// sometimes an all-ones or a huge one, to aim at positions and lengths.
    fn scribble(&mut self, rng: &mut Rng) {
        let r = rng.next();
        let span = if r & 1 == 0 {
            self.len.min(1024)
        } else {
            self.len
        };
        let off = (rng.next() as usize % (span / 8)) * 8;
        let v = match r >> 1 & 3 {
            0 => rng.next() % 4096,
            1 => u64::MAX - rng.next() % 16,
            2 => rng.next() % (self.len as u64 * 2),
            _ => rng.next(),
        };
        // SAFETY: an aligned 8-byte store inside the mapping; volatile, as
        // another party's write.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u64, v) };
    }
}

impl Drop for Scribbler {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = ipcbench::harness::validate::mix64(self.0);
        self.0
    }
}

/// Ends the test process if the test hangs, instead of hanging CI.
fn watchdog(what: &'static str) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("{what}: still running after 120 s: a wait does not end");
        std::process::abort();
    });
}

/// Runs `f` and checks it returned within [`BOUND`].
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < BOUND, "{what} took {:?}", t.elapsed());
    r
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    timeouts: u64,
    corrupt: u64,
    other: u64,
    rebuilt: u64,
    /// The other errors seen, each once.
    kinds: std::collections::BTreeSet<String>,
}

/// How one call on a structure under garbage ended.
enum Outcome {
    Ok,
    /// A timeout, or full / empty.
    Wait,
    /// "memory is corrupt".
    Corrupt,
    /// Any other error (closed by the garbage, a peer that seems dead).
    Other(String),
}

impl Tally {
    /// Counts `o`; whether the structure is done for.
    fn add(&mut self, o: Outcome) -> bool {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Wait => self.timeouts += 1,
            Outcome::Corrupt => {
                self.corrupt += 1;
                return true;
            }
            Outcome::Other(e) => {
                self.other += 1;
                self.kinds.insert(e);
                return true;
            }
        }
        false
    }
}

/// [`ROUNDS`] rounds of garbage, each a scribble on the file of a
/// structure `make` made (named by it) and one `step`: a send and a
/// receive, checked by `step`, and how each ended. A fresh structure every
/// 500 rounds, or once one is done for. The garbage must be noticed.
fn garbage_rounds<S>(
    what: &str,
    seed: u64,
    mut make: impl FnMut() -> (String, S),
    mut step: impl FnMut(&mut S, &mut Rng, &mut Vec<u8>) -> [Outcome; 2],
) {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut round = 0;
    while round < ROUNDS {
        let (name, mut it) = make();
        let mut s = Scribbler::new(&name);
        let mut buf = Vec::new();
        for _ in 0..500 {
            round += 1;
            s.scribble(&mut rng);
            let [a, b] = step(&mut it, &mut rng, &mut buf);
            // Both counted, then a structure done for is replaced.
            if tally.add(a) | tally.add(b) {
                break;
            }
        }
        tally.rebuilt += 1;
    }
    eprintln!("{what}: {ROUNDS} rounds of garbage: {tally:?}");
    assert!(
        tally.corrupt > 0,
        "garbage was never noticed: the test aims badly"
    );
}

#[test]
fn garbage_in_a_ring_is_an_error_never_a_crash_or_a_hang() {
    watchdog("ring");
    let outcome = |r: Result<(), RingError>| match r {
        Ok(()) => Outcome::Ok,
        Err(RingError::Timeout) => Outcome::Wait,
        Err(RingError::Corrupt(_)) => Outcome::Corrupt,
        Err(e) => Outcome::Other(e.to_string()),
    };
    garbage_rounds(
        "ring",
        0x5eed_0001,
        || {
            let name = unique_name("hostile-ring");
            let ring = Ring::create(&name, 4096, Wait::SPIN_PARK).unwrap();
            let ends = (ring.producer().unwrap(), ring.consumer().unwrap());
            (name, (ring, ends))
        },
        |(ring, (tx, rx)), rng, buf| {
            let max = ring.max_payload();
            let len = (rng.next() % (max as u64 + 1)) as usize;
            let msg = vec![0xA5; len];
            let sent = bounded("send", || tx.send(&msg, T));
            let got = bounded("recv", || rx.recv(buf, T));
            assert!(
                buf.len() <= max,
                "recv returned {} bytes, past {max}",
                buf.len()
            );
            assert!(
                buf.capacity() <= 2 * max.max(64),
                "recv allocated {}",
                buf.capacity()
            );
            [outcome(sent), outcome(got.map(drop))]
        },
    );
}

#[test]
fn garbage_in_a_queue_is_an_error_never_a_crash_or_a_hang() {
    watchdog("queue");
    let outcome = |r: Result<(), QueueError>| match r {
        Ok(()) => Outcome::Ok,
        Err(QueueError::Timeout | QueueError::Full | QueueError::Empty) => Outcome::Wait,
        Err(QueueError::Corrupt(_)) => Outcome::Corrupt,
        Err(e) => Outcome::Other(e.to_string()),
    };
    garbage_rounds(
        "queue",
        0x5eed_0002,
        || {
            let name = unique_name("hostile-queue");
            let q = Queue::create(&name, 16, 256, Wait::SPIN_PARK).unwrap();
            (name, q)
        },
        |q, rng, buf| {
            let len = (rng.next() % 257) as usize;
            let put = bounded("put", || q.put(&vec![0x5A; len], T));
            let got = bounded("get", || q.get(buf, T));
            assert!(
                buf.len() <= 256,
                "get returned {} bytes, past the slot",
                buf.len()
            );
            assert!(buf.capacity() <= 512, "get allocated {}", buf.capacity());
            [outcome(put), outcome(got.map(drop))]
        },
    );
}

#[test]
fn garbage_in_a_joinable_count_never_hangs_join() {
    watchdog("joinable");
    let mut rng = Rng(0x5eed_0003);
    let name = unique_name("hostile-join");
    let q = JoinableQueue::create(&name, 16, 64, Wait::SPIN_PARK).unwrap();
    let mut s = Scribbler::new(&format!("{name}-join"));
    let (mut joined, mut timeouts, mut refused) = (0, 0, 0);
    for _ in 0..ROUNDS / 4 {
        s.scribble(&mut rng);
        match bounded("join", || q.join(T)) {
            Ok(()) => joined += 1,
            Err(QueueError::Timeout) => timeouts += 1,
            Err(e) => panic!("join: {e}"),
        }
        match bounded("task_done", || q.task_done()) {
            Ok(()) => {}
            Err(QueueError::TooManyTaskDone) => refused += 1,
            Err(e) => panic!("task_done: {e}"),
        }
    }
    eprintln!("joinable: {joined} joins, {timeouts} timeouts, {refused} task_done refused");
}
