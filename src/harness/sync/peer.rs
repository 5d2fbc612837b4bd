//! One process of a sync point: what it does with its primitive, every
//! cycle checked.

use std::time::Instant;

use super::super::child::bodies;
use super::super::control::{self, PeerReport};
use super::{JOIN_BATCH, Prim, SyncArgs, SyncSpec};
use crate::shm::region::{Kind, Region};
use crate::shm::semaphore::{Event, Lock, Semaphore};
use crate::shm::{Array, Barrier, Condition, JoinableQueue, RLock, Value};

/// A word of a raw region, shared by processes.
pub(super) fn word(region: &Region, i: usize) -> &crate::shm::sync::AtomicU64 {
    assert!(region.body_len() >= (i + 1) * 64, "region too small");
    // SAFETY: the body is at least (i + 1) * 64 bytes (checked), 128-byte
    // aligned, zeroed at creation; atomics are valid for any bits.
    unsafe { &*(region.body_ptr().add(i * 64) as *const crate::shm::sync::AtomicU64) }
}

/// The first increment of processes 0 and 1 when they bump a value
/// without its lock, interleaved so that one is lost for certain: 0 reads
/// (`begin`), 1 makes a whole increment, 0 writes what it read plus one
/// (`finish`). Left to the scheduler, a busy machine may run the two one
/// after the other and lose nothing, so a test that the loss is caught
/// would pass or fail by chance. Other processes do nothing here.
fn lose_one<S>(a: &SyncArgs, begin: impl Fn() -> S, finish: impl Fn(S)) -> Result<(), String> {
    use crate::shm::sync::Ordering::{Acquire, Release};
    let data = Region::open(&a.data, Kind::Raw).map_err(|e| e.to_string())?;
    let (read, bumped) = (word(&data, 1), word(&data, 2));
    let until = |w: &crate::shm::sync::AtomicU64, what: &str| -> Result<(), String> {
        let t0 = Instant::now();
        // Acquire: pairs with the other process's Release below.
        while w.load(Acquire) == 0 {
            if t0.elapsed() > LOSE_ONE_WAIT {
                return Err(format!("the other process never {what}"));
            }
            std::thread::yield_now();
        }
        Ok(())
    };
    match a.id {
        0 => {
            let x = begin();
            read.store(1, Release);
            until(bumped, "made its increment")?;
            finish(x);
        }
        1 => {
            until(read, "read the value")?;
            let x = begin();
            finish(x);
            bumped.store(1, Release);
        }
        _ => {}
    }
    Ok(())
}

/// Whether `spec`'s processes bump their value without exclusion, as a
/// test of the loss check does: without its lock (no permits), or inside
/// a semaphore of more than one permit. Then [`lose_one`] runs.
pub(super) fn unlocked(spec: &SyncSpec) -> bool {
    spec.procs >= 2
        && match spec.prim {
            Prim::Value | Prim::Array | Prim::Atomic => spec.permits == 0,
            Prim::Semaphore => spec.permits >= 2,
            _ => false,
        }
}

/// How long [`lose_one`] waits for the other process: a hang detector.
const LOSE_ONE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one process of a sync point (in a child).
pub fn run_peer(a: &SyncArgs) -> Result<PeerReport, String> {
    if let Some(cpu) = a.cpu {
        crate::record::pin_to(cpu).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
    }
    let e = |e: crate::shm::semaphore::SemError| e.to_string();
    let timeout = Some(std::time::Duration::from_secs(30));
    match a.prim {
        Prim::Lock | Prim::Semaphore | Prim::RLock => {
            let counter = Region::open(&a.other, Kind::Raw).map_err(|e| e.to_string())?;
            let count = word(&counter, 0);
            // The increment is a plain load and store (Relaxed atomics, no
            // read-modify-write): without mutual exclusion, increments
            // of different processes overwrite each other and the total
            // comes out short.
            let bump = || count.store(count.load(Relaxed) + 1, Relaxed);
            use crate::shm::sync::Ordering::Relaxed;
            let cycle: Box<dyn FnMut() -> Result<(), String>> = match a.prim {
                Prim::RLock => {
                    let l = RLock::open(&a.region).map_err(e)?;
                    Box::new(move || {
                        l.acquire(timeout).map_err(e)?;
                        l.acquire(timeout).map_err(e)?;
                        bump();
                        l.release().map_err(e)?;
                        l.release().map_err(e)
                    })
                }
                Prim::Lock => {
                    let l = Lock::open(&a.region).map_err(e)?;
                    Box::new(move || {
                        let _g = l.lock(timeout).map_err(e)?;
                        bump();
                        Ok(())
                    })
                }
                _ => {
                    let s = Semaphore::open(&a.region).map_err(e)?;
                    if a.no_lock {
                        // Two permits: both are inside at once, and one
                        // increment of the two is lost for certain.
                        s.acquire(timeout).map_err(e)?;
                        lose_one(a, || count.load(Relaxed), |x| count.store(x + 1, Relaxed))?;
                        s.release().map_err(e)?;
                    }
                    Box::new(move || {
                        s.acquire(timeout).map_err(e)?;
                        bump();
                        s.release().map_err(e)
                    })
                }
            };
            control::barrier()?;
            bodies::timed_cycles(a.warmup, a.iters, cycle)
        }
        Prim::Value | Prim::Atomic => {
            let v = Value::<i64>::open(&a.region).map_err(|e| e.to_string())?;
            control::barrier()?;
            if a.no_lock {
                lose_one(a, || v.value(), |x| v.set_value(x + 1))?;
                bodies::timed_cycles(a.warmup, a.iters, || {
                    v.set_value(v.value() + 1);
                    Ok(())
                })
            } else if a.prim == Prim::Atomic {
                bodies::timed_cycles(a.warmup, a.iters, || {
                    v.fetch_add(0, 1);
                    Ok(())
                })
            } else {
                let l = v.get_lock().ok_or("the value has no lock")?;
                bodies::timed_cycles(a.warmup, a.iters, || {
                    let _g = l.lock(timeout).map_err(e)?;
                    v.set_value(v.value() + 1);
                    Ok(())
                })
            }
        }
        Prim::Array => {
            let arr = Array::<f64>::open(&a.region).map_err(|e| e.to_string())?;
            let l = arr.get_lock().ok_or("the array has no lock")?;
            control::barrier()?;
            if a.no_lock {
                lose_one(
                    a,
                    || arr.to_vec(),
                    |x| {
                        for (i, e) in x.into_iter().enumerate() {
                            arr.set(i, e + 1.0);
                        }
                    },
                )?;
            }
            bodies::timed_cycles(a.warmup, a.iters, || {
                let _g = if a.no_lock {
                    None
                } else {
                    Some(l.lock(timeout).map_err(e)?)
                };
                for i in 0..arr.len() {
                    arr.set(i, arr.get(i) + 1.0);
                }
                Ok(())
            })
        }
        Prim::Joinable => {
            let q = JoinableQueue::open(&a.region).map_err(|e| e.to_string())?;
            let data = Region::open(&a.data, Kind::Raw).map_err(|e| e.to_string())?;
            let processed = word(&data, 0);
            control::barrier()?;
            use crate::shm::sync::Ordering::Relaxed;
            let qe = |e: crate::shm::QueueError| e.to_string();
            if a.id == 0 {
                let mut next = 0u64;
                let report = bodies::timed_cycles(a.warmup, a.iters, || {
                    for _ in 0..JOIN_BATCH {
                        q.put(&next.to_le_bytes(), timeout).map_err(qe)?;
                        next += 1;
                    }
                    q.join(timeout).map_err(qe)?;
                    // Ordered by task_done's Release and join's Acquire.
                    match processed.load(Relaxed) {
                        n if n == next => Ok(()),
                        n => Err(format!("join returned with {n} of {next} items processed")),
                    }
                })?;
                Ok(PeerReport {
                    messages: report.messages * JOIN_BATCH,
                    ..report
                })
            } else {
                let mut buf = Vec::with_capacity(8);
                let cpu0 = super::super::measure::cpu_time_ns();
                let mut n = 0u64;
                loop {
                    match q.get(&mut buf, None) {
                        Ok(_) => {}
                        Err(crate::shm::QueueError::Closed) => break,
                        Err(e) => return Err(qe(e)),
                    }
                    match <[u8; 8]>::try_from(buf.as_slice()).map(u64::from_le_bytes) {
                        Ok(seq) if seq == n => {}
                        Ok(seq) => return Err(format!("item {n}: got item {seq}")),
                        Err(_) => return Err(format!("item {n}: {} bytes", buf.len())),
                    }
                    n += 1;
                    // One consumer: a plain store; task_done publishes it.
                    processed.store(n, Relaxed);
                    q.task_done().map_err(qe)?;
                }
                Ok(PeerReport {
                    messages: n,
                    cpu_ns: super::super::measure::cpu_time_ns() - cpu0,
                    ..PeerReport::default()
                })
            }
        }
        Prim::Condition => {
            use crate::shm::sync::Ordering::Relaxed;
            let c = Condition::open(&a.region).map_err(e)?;
            let data = Region::open(&a.data, Kind::Raw).map_err(|e| e.to_string())?;
            // The one-slot buffer: 0 when empty, else the item's number.
            // Read and written under the condition's lock only, which
            // orders it: Relaxed.
            let slot = word(&data, 0);
            control::barrier()?;
            let producer = a.id == 0;
            let mut next = 0u64;
            bodies::timed_cycles(a.warmup, a.iters, || {
                next += 1;
                c.acquire(timeout).map_err(e)?;
                let ready = if producer {
                    c.wait_for(|| slot.load(Relaxed) == 0, timeout)
                } else {
                    c.wait_for(|| slot.load(Relaxed) != 0, timeout)
                };
                let r = match ready.map_err(e)? {
                    false if producer => Err(format!("item {next}: the slot was never emptied")),
                    false => Err(format!("item {next} never came")),
                    true if producer => {
                        slot.store(next, Relaxed);
                        Ok(())
                    }
                    true => match slot.swap(0, Relaxed) {
                        got if got == next => Ok(()),
                        got => Err(format!("item {next}: got item {got}")),
                    },
                };
                let notified = c.notify(1).map_err(e);
                c.release().map_err(e)?;
                r.and(notified.map(drop))
            })
        }
        Prim::Barrier => {
            use crate::shm::sync::Ordering::Relaxed;
            let b = Barrier::open(&a.region).map_err(|e| e.to_string())?;
            let data = Region::open(&a.data, Kind::Raw).map_err(|e| e.to_string())?;
            let counter = word(&data, 0);
            let n = u64::from(b.parties());
            control::barrier()?;
            let mut generation = 0u64;
            bodies::timed_cycles(a.warmup, a.iters, || {
                // Ordered by the barrier's pass (its arrivals' chain).
                counter.fetch_add(1, Relaxed);
                b.wait(timeout).map_err(|e| e.to_string())?;
                generation += 1;
                // All n of this generation are in; the next generation's
                // may be, but for this process's own.
                match counter.load(Relaxed) {
                    c if c >= n * generation && c < n * (generation + 1) => Ok(()),
                    c => Err(format!(
                        "generation {generation}: the counter reads {c}, not {} to {}",
                        n * generation,
                        n * (generation + 1) - 1
                    )),
                }
            })
        }
        Prim::Event => {
            let (ping, pong) = (
                Event::open(&a.region).map_err(e)?,
                Event::open(&a.other).map_err(e)?,
            );
            let data = Region::open(&a.data, Kind::Raw).map_err(|e| e.to_string())?;
            let (there, back) = (word(&data, 0), word(&data, 1));
            use crate::shm::sync::Ordering::{Acquire, Release};
            let wait = |ev: &Event| -> Result<(), String> {
                if !ev.wait(timeout).map_err(e)? {
                    return Err("the other side never set its event".into());
                }
                ev.clear();
                Ok(())
            };
            control::barrier()?;
            let mut turn = 0u64;
            if a.id == 0 {
                bodies::timed_cycles(a.warmup, a.iters, || {
                    turn += 1;
                    there.store(turn, Release);
                    ping.set();
                    wait(&pong)?;
                    match back.load(Acquire) {
                        t if t == turn => Ok(()),
                        t => Err(format!("turn {turn}: the answer was for turn {t}")),
                    }
                })
            } else {
                bodies::timed_cycles(a.warmup, a.iters, || {
                    turn += 1;
                    wait(&ping)?;
                    match there.load(Acquire) {
                        t if t == turn => {}
                        t => return Err(format!("turn {turn}: got turn {t}")),
                    }
                    back.store(turn, Release);
                    pong.set();
                    Ok(())
                })
            }
        }
    }
}
