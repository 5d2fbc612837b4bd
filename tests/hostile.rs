//! Hostile or corrupt shared memory. Before anyone attaches: every word of
//! every structure's files set to garbage, one at a time, then an attach and
//! a use. While in use: a second mapping of a ring's, a queue's or a
//! joinable queue's files (what another process sees), written with garbage
//! by another thread the whole time, into control words and data, while
//! this side keeps sending and receiving with short timeouts (at least
//! 20 000 rounds and 20 000 garbage words each; every fresh structure
//! first works). Nothing may read
//! or write out of bounds (the test process would crash), allocate past
//! the structure's limit, or wait past its timeout: each call returns a
//! message, a timeout, or an error that says the memory is corrupt.
#![cfg(not(loom))]

mod common;

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

// SAFETY: the mapping belongs to the process, not to a thread; the writer
// thread is its only user while it runs.
unsafe impl Send for Scribbler {}

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

/// Rounds of `step` (a send and a receive, checked by `step`, and how
/// each ended) on structures `make` made, while another thread writes
/// garbage into their files (named by `make`) the whole time, a word every
/// few microseconds: until [`ROUNDS`] rounds have run and [`ROUNDS`]
/// garbage words have been written. A fresh structure after 200 words, or
/// once one is done for; each fresh one must first work (one clean step,
/// both calls succeeding). The garbage must be noticed.
fn garbage_rounds<S>(
    what: &str,
    seed: u64,
    mut make: impl FnMut() -> (Vec<String>, S),
    mut step: impl FnMut(&mut S, &mut Rng, &mut Vec<u8>) -> [Outcome; 2],
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let (mut rounds, mut words) = (0u64, 0u64);
    while rounds < ROUNDS || words < ROUNDS {
        let (files, mut it) = make();
        let mut buf = Vec::new();
        let clean = step(&mut it, &mut rng, &mut buf);
        assert!(
            matches!(clean, [Outcome::Ok, Outcome::Ok]),
            "{what}: a fresh structure did not work before any garbage"
        );
        let stop = AtomicBool::new(false);
        let written = AtomicU64::new(0);
        let mut writers: Vec<Scribbler> = files.iter().map(|f| Scribbler::new(f)).collect();
        let mut wrng = Rng(rng.next());
        std::thread::scope(|sc| {
            sc.spawn(|| {
                // Relaxed: a flag and a count, nothing published through them.
                while !stop.load(Ordering::Relaxed) {
                    let n = writers.len() as u64;
                    writers[(wrng.next() % n) as usize].scribble(&mut wrng);
                    written.fetch_add(1, Ordering::Relaxed);
                    let pause = Instant::now() + Duration::from_micros(wrng.next() % 20);
                    while Instant::now() < pause {
                        std::hint::spin_loop();
                    }
                }
            });
            while written.load(Ordering::Relaxed) < 200 {
                rounds += 1;
                let [a, b] = step(&mut it, &mut rng, &mut buf);
                // Both counted, then a structure done for is replaced.
                if tally.add(a) | tally.add(b) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        words += written.load(Ordering::Relaxed);
        tally.rebuilt += 1;
    }
    eprintln!(
        "{what}: {rounds} rounds under a concurrent writer of {words} garbage words: {tally:?}"
    );
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
            (vec![name], (ring, ends))
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
            (vec![name], q)
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
fn garbage_in_a_joinable_queue_is_an_error_never_a_crash_or_a_hang() {
    watchdog("joinable");
    let outcome = |r: Result<(), QueueError>| match r {
        Ok(()) => Outcome::Ok,
        Err(QueueError::Timeout | QueueError::Full | QueueError::Empty) => Outcome::Wait,
        // A count the garbage made smaller than the items out: noticed.
        Err(QueueError::Corrupt(_) | QueueError::TooManyTaskDone) => Outcome::Corrupt,
        Err(e) => Outcome::Other(e.to_string()),
    };
    garbage_rounds(
        "joinable queue",
        0x5eed_0003,
        || {
            let name = unique_name("hostile-join");
            let q = JoinableQueue::create(&name, 16, 64, Wait::SPIN_PARK).unwrap();
            (vec![name.clone(), format!("{name}-join")], q)
        },
        |q, rng, buf| {
            let len = (rng.next() % 65) as usize;
            let put = bounded("put", || q.put(&vec![0x3C; len], T));
            let got = bounded("get", || q.get(buf, T));
            assert!(
                buf.len() <= 64 && buf.capacity() <= 512,
                "get: {} bytes",
                buf.len()
            );
            let done = match got {
                Ok(_) => bounded("task_done", || q.task_done()),
                Err(e) => Err(e),
            };
            let joined = bounded("join", || q.join(T));
            [outcome(put), outcome(done.and(joined))]
        },
    );
}

/// What was done to one structure: its files (the structure's own and any
/// it keeps beside it), how it is made, and how another process would
/// attach to it and use it once. The use is bounded by [`T`] per call.
struct Subject {
    what: &'static str,
    files: fn(&str) -> Vec<String>,
    /// Makes it; returns the creator's handle (kept while it is attacked).
    make: fn(&str) -> Box<dyn std::any::Any>,
    /// Attaches and uses it; a refusal is an error string.
    attach_and_use: fn(&str) -> Result<(), String>,
}

fn ring_subject() -> Subject {
    Subject {
        what: "ring",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Ring::create(n, 64, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let ring = Ring::open(n).map_err(|e| e.to_string())?;
            let max = ring.max_payload();
            let mut tx = ring.producer().map_err(|e| e.to_string())?;
            let mut rx = ring.consumer().map_err(|e| e.to_string())?;
            let sent = tx.send(&[7; 24], T);
            let mut buf = Vec::new();
            let got = rx.recv(&mut buf, T);
            assert!(
                buf.len() <= max && buf.capacity() <= 4096,
                "ring: {} bytes",
                buf.len()
            );
            sent.and(got.map(drop)).map_err(|e| e.to_string())
        },
    }
}

fn queue_subject() -> Subject {
    Subject {
        what: "queue",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Queue::create(n, 2, 16, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let q = Queue::open(n).map_err(|e| e.to_string())?;
            let put = q.put(&[7; 16], T);
            let mut buf = Vec::new();
            let got = q.get(&mut buf, T);
            assert!(
                buf.len() <= 16 && buf.capacity() <= 4096,
                "queue: {} bytes",
                buf.len()
            );
            put.and(got.map(drop)).map_err(|e| e.to_string())
        },
    }
}

fn pipe_subject() -> Subject {
    use ipcbench::shm::Pipe;
    Subject {
        what: "pipe",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Pipe::create(n, 64, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let p = Pipe::open(n).map_err(|e| e.to_string())?;
            let mut a = p.end(0).map_err(|e| e.to_string())?;
            let mut b = p.end(1).map_err(|e| e.to_string())?;
            a.set_max_message(1024);
            b.set_max_message(1024);
            // Two fragments each way.
            let sent = a.send(&[7; 40], T);
            let mut buf = Vec::new();
            let got = b.recv(&mut buf, T);
            assert!(
                buf.capacity() <= 1 << 20,
                "pipe: allocated {}",
                buf.capacity()
            );
            let back = b.send(&[9; 40], T);
            let got_back = a.recv(&mut buf, T);
            assert!(
                buf.capacity() <= 1 << 20,
                "pipe: allocated {}",
                buf.capacity()
            );
            sent.and(got.map(drop))
                .and(back)
                .and(got_back.map(drop))
                .map_err(|e| e.to_string())
        },
    }
}

fn joinable_subject() -> Subject {
    Subject {
        what: "joinable queue",
        files: |n| vec![n.to_owned(), format!("{n}-join")],
        make: |n| Box::new(JoinableQueue::create(n, 2, 8, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let q = JoinableQueue::open(n).map_err(|e| e.to_string())?;
            let put = q.put(&[7; 8], T);
            let mut buf = Vec::new();
            let got = q.get(&mut buf, T);
            let done = q.task_done();
            let joined = q.join(T);
            put.and(got.map(drop))
                .and(done)
                .and(joined)
                .map_err(|e| e.to_string())
        },
    }
}

fn semaphore_subject() -> Subject {
    use ipcbench::shm::Semaphore;
    Subject {
        what: "semaphore",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Semaphore::create(n, 1, 2, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let s = Semaphore::open(n).map_err(|e| e.to_string())?;
            let _ = s.value();
            s.acquire(T).map_err(|e| e.to_string())?;
            s.release().map_err(|e| e.to_string())
        },
    }
}

fn lock_subject() -> Subject {
    use ipcbench::shm::Lock;
    Subject {
        what: "lock",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Lock::create(n, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let l = Lock::open(n).map_err(|e| e.to_string())?;
            let _ = (l.holder(), l.is_locked());
            let g = l.lock(T).map_err(|e| e.to_string())?;
            drop(g);
            Ok(())
        },
    }
}

fn event_subject() -> Subject {
    use ipcbench::shm::Event;
    Subject {
        what: "event",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Event::create(n, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let e = Event::open(n).map_err(|e| e.to_string())?;
            let _ = e.is_set();
            e.set();
            let r = e.wait(T).map_err(|e| e.to_string());
            e.clear();
            r.map(drop)
        },
    }
}

fn rlock_subject() -> Subject {
    use ipcbench::shm::RLock;
    Subject {
        what: "rlock",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(RLock::create(n, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let l = RLock::open(n).map_err(|e| e.to_string())?;
            let _ = (l.holder(), l.depth());
            let g = l.lock(T).map_err(|e| e.to_string())?;
            let again = l.lock(T).map_err(|e| e.to_string())?;
            drop(again);
            drop(g);
            Ok(())
        },
    }
}

fn condition_subject() -> Subject {
    use ipcbench::shm::Condition;
    Subject {
        what: "condition",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Condition::create(n, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let c = Condition::open(n).map_err(|e| e.to_string())?;
            c.acquire(T).map_err(|e| e.to_string())?;
            let r = c
                .wait(T)
                .and_then(|_| c.notify_all())
                .map_err(|e| e.to_string());
            let _ = c.release();
            let _ = c.waiting();
            r.map(drop)
        },
    }
}

fn barrier_subject() -> Subject {
    use ipcbench::shm::Barrier;
    Subject {
        what: "barrier",
        files: |n| vec![n.to_owned()],
        make: |n| Box::new(Barrier::create(n, 1, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let b = Barrier::open(n).map_err(|e| e.to_string())?;
            let _ = (b.n_waiting(), b.is_broken());
            b.wait(T).map(drop).map_err(|e| e.to_string())
        },
    }
}

fn value_subject() -> Subject {
    use ipcbench::shm::Value;
    Subject {
        what: "value",
        files: |n| vec![n.to_owned(), format!("{n}-lock")],
        make: |n| Box::new(Value::<i64>::create_value(n, 5, true, Wait::SPIN_PARK).unwrap()),
        attach_and_use: |n| {
            let v = Value::<i64>::open(n).map_err(|e| e.to_string())?;
            let lock = v.get_lock().ok_or("no lock")?;
            let g = lock.lock(T).map_err(|e| e.to_string())?;
            v.set_value(v.value().wrapping_add(1));
            drop(g);
            let _ = v.to_vec();
            Ok(())
        },
    }
}

/// Garbage written *before* another process attaches: every 8-byte word
/// of every file of every structure (the region header, the structure's
/// control words, its slots and bytes), one at a time, set to each of a
/// list of values aimed at positions, lengths, counts and holders. The
/// attach and a use must end within their timeouts with the structure
/// working or an error: never a crash, an access out of bounds, an
/// allocation past the limits, or a hang.
#[test]
fn garbage_before_attach_in_every_word_of_every_structure() {
    watchdog("before attach");
    let values: [u64; 12] = [
        0,
        1,
        3,
        7,
        8,
        61,
        0x7fff_ffff,
        0xffff_ffff,
        1 << 32,
        u64::MAX - 7,
        u64::MAX,
        // A holder word naming pid 1 (alive, start time unknown).
        1,
    ];
    let subjects = [
        ring_subject(),
        queue_subject(),
        pipe_subject(),
        joinable_subject(),
        semaphore_subject(),
        lock_subject(),
        event_subject(),
        value_subject(),
        rlock_subject(),
        condition_subject(),
        barrier_subject(),
    ];
    for s in subjects {
        let t = Instant::now();
        let (mut worked, mut refused) = (0u64, std::collections::BTreeMap::<String, u64>::new());
        let probe = unique_name("hostile-before");
        let files = {
            let _keep = (s.make)(&probe);
            (s.files)(&probe)
                .iter()
                .map(|f| Scribbler::new(f).len)
                .collect::<Vec<_>>()
        };
        for (fi, &len) in files.iter().enumerate() {
            for off in (0..len).step_by(8) {
                for &v in &values {
                    let name = unique_name("hostile-before");
                    let keep = (s.make)(&name);
                    let file = &(s.files)(&name)[fi];
                    let sc = Scribbler::new(file);
                    assert_eq!(sc.len, len, "{}: {file} changed size", s.what);
                    // SAFETY: an aligned 8-byte store inside the mapping.
                    unsafe { std::ptr::write_volatile(sc.ptr.add(off) as *mut u64, v) };
                    drop(sc);
                    match bounded(s.what, || (s.attach_and_use)(&name)) {
                        Ok(()) => worked += 1,
                        Err(e) => {
                            // One line per kind of refusal, not per file.
                            let kind = e.replace(&name, "<name>");
                            let kind: String = kind
                                .split(|c: char| c.is_ascii_digit())
                                .collect::<Vec<_>>()
                                .join("#");
                            *refused.entry(kind).or_default() += 1;
                        }
                    }
                    drop(keep);
                }
            }
        }
        let tried: u64 = files
            .iter()
            .map(|l| (*l as u64 / 8) * values.len() as u64)
            .sum();
        eprintln!(
            "{}: {tried} garbage words before attach in {:?}: {worked} worked, {} refused",
            s.what,
            t.elapsed(),
            refused.values().sum::<u64>()
        );
        for (kind, n) in &refused {
            eprintln!("  {n:6} {kind}");
        }
        assert!(
            !refused.is_empty(),
            "{}: no garbage was ever refused: the test aims badly",
            s.what
        );
    }
    let left: Vec<_> = common::shm_files(&format!("ipcbench-{}-", std::process::id()))
        .into_iter()
        .filter(|n| n.contains("hostile-before"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
