//! Model checks of the ring, the queue, the semaphore, the condition, the
//! barrier and the floors with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
//! (`.ci/run` does, with `LOOM_MAX_PREEMPTIONS=3`). Under `--cfg loom` the
//! core's atomics, payload bytes and futex are loom's, so the models explore
//! every interleaving (up to the preemption bound) and flag data races on
//! payloads, lost wake-ups (as deadlocks) and wrong results.
#![cfg(loom)]

use ipcbench::shm::floor::{Dir, Floor, FloorKind};
use ipcbench::shm::{
    Barrier, BarrierError, Condition, Event, Lock, Queue, QueueError, RLock, Ring, RingError,
    Semaphore, Wait,
};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Explores `f` with at most two preemptions, whatever
/// `LOOM_MAX_PREEMPTIONS` says: for the models of many parties on one
/// queue, which at three take minutes (200 s for two consumers) where at
/// two they take seconds. Two still catch the lost wake-ups they are for
/// (a sleepers' count dropped without its ticket check deadlocks
/// `queue_one_producer_two_consumers` at two).
fn model_two_preemptions<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(2, |p| p.min(2)));
    b.check(f);
}

/// Three frames through a 32-byte ring (frame limit 8 B, so every record
/// is 16 bytes, at offsets 0, 16 and 0): the second fills the ring, the
/// third must wait for space and wraps without a pad ([`ring_pads`] has
/// the pad).
fn ring_spsc(wait: Wait) {
    loom::model(move || {
        let ring = Ring::on_heap(32, wait).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            tx.send(&[1, 2, 3], None).unwrap();
            tx.send(&[4; 8], None).unwrap();
            tx.send(&[5, 6], None).unwrap();
        });
        let mut buf = Vec::new();
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, [4; 8]);
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, [5, 6]);
        assert!(matches!(rx.recv(&mut buf, None), Err(RingError::Closed)));
        t.join().unwrap();
    });
}

/// A receive with a timeout, while the only frame may or may not have been
/// sent: it returns the frame or times out, and after a timeout the frame
/// is still there, whole. The wait is the core's own loop, on the model's
/// clock (each reading 1 ms on): spin and spin-yield time out in their
/// loops; spin-park times out before it parks or sleeps until the send.
fn ring_times_out_and_loses_nothing(wait: Wait) {
    loom::model(move || {
        let ring = Ring::on_heap(32, wait).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let t = thread::spawn(move || tx.send(&[9, 9], None).unwrap());
        let mut buf = Vec::new();
        match rx.recv(&mut buf, Some(std::time::Duration::from_millis(3))) {
            Ok(_) => {}
            Err(RingError::Timeout) => {
                rx.recv(&mut buf, None).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(buf, [9, 9]);
        assert!(matches!(rx.recv(&mut buf, None), Err(RingError::Closed)));
        t.join().unwrap();
    });
}

#[test]
fn ring_times_out_spin() {
    ring_times_out_and_loses_nothing(Wait::SPIN);
}

#[test]
fn ring_times_out_spin_yield() {
    ring_times_out_and_loses_nothing(Wait::SPIN_YIELD);
}

#[test]
fn ring_times_out_spin_park() {
    ring_times_out_and_loses_nothing(Wait::SPIN_PARK);
}

/// Nothing comes: a spinning or yielding wait ends at its deadline.
#[test]
fn an_empty_ring_times_out() {
    for wait in [Wait::SPIN, Wait::SPIN_YIELD] {
        loom::model(move || {
            let ring = Ring::on_heap(32, wait).unwrap();
            let _tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let mut buf = Vec::new();
            let r = rx.recv(&mut buf, Some(std::time::Duration::from_millis(3)));
            assert!(matches!(r, Err(RingError::Timeout)), "{r:?}");
        });
    }
}

#[test]
fn ring_spsc_park() {
    ring_spsc(Wait::PARK);
}

#[test]
fn ring_spsc_spin_park() {
    ring_spsc(Wait::SPIN_PARK);
}

#[test]
fn ring_spsc_spin() {
    ring_spsc(Wait::SPIN);
}

/// Three 16-byte frames through a 64-byte ring: records of 24 bytes at 0
/// and 24; the third does not fit before the end (48 + 24 > 64), so the
/// producer writes a pad marker at 48 and the frame at 0, once the
/// consumer has freed the first. The consumer must skip the pad, read the
/// frame whole, and see no race on its bytes.
#[test]
fn ring_pads_at_the_end() {
    loom::model(|| {
        let ring = Ring::on_heap(64, Wait::PARK).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            for i in 1..=3u8 {
                tx.send(&[i; 16], None).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 1..=3u8 {
            rx.recv(&mut buf, None).unwrap();
            assert_eq!(buf, [i; 16]);
        }
        assert!(matches!(rx.recv(&mut buf, None), Err(RingError::Closed)));
        t.join().unwrap();
    });
}

/// A pipe's round trip with a message in two fragments each way (the
/// rings hold 32 bytes, a frame at most 8): the echo receives it whole and
/// sends it back through the other ring.
#[test]
fn pipe_echoes_a_fragmented_message() {
    loom::model(|| {
        let (mut a, mut b) = ipcbench::shm::Pipe::on_heap(32, Wait::PARK).unwrap();
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            b.recv(&mut buf, None).unwrap();
            b.send(&buf, None).unwrap();
        });
        let msg: Vec<u8> = (0..12).collect();
        a.send(&msg, None).unwrap();
        let mut buf = Vec::new();
        a.recv(&mut buf, None).unwrap();
        assert_eq!(buf, msg);
        t.join().unwrap();
    });
}

#[test]
fn queue_two_producers_one_consumer() {
    model_two_preemptions(|| {
        let q = Queue::on_heap(2, 8, Wait::PARK).unwrap();
        let hs: Vec<_> = (0..2u8)
            .map(|i| {
                let q = q.clone();
                thread::spawn(move || q.put(&[i; 3], None).unwrap())
            })
            .collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..2 {
            q.get(&mut buf, None).unwrap();
            assert_eq!(buf.len(), 3);
            assert!(buf.iter().all(|b| *b == buf[0]));
            got.push(buf[0]);
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1]);
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn queue_laps_and_blocks_when_full() {
    loom::model(|| {
        let q = Queue::on_heap(2, 8, Wait::PARK).unwrap();
        let p = q.clone();
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                p.put(&[i], None).unwrap();
            }
            p.close();
        });
        let mut buf = Vec::new();
        for i in 0..3u8 {
            q.get(&mut buf, None).unwrap();
            assert_eq!(buf, [i]);
        }
        assert!(matches!(q.get(&mut buf, None), Err(QueueError::Closed)));
        t.join().unwrap();
    });
}

/// Two consumers may both sleep on the queue's "not empty" notifier; each
/// put wakes exactly one (the futex model wakes `min(n, asleep)`, as the
/// kernel does), so two puts must reach both.
#[test]
fn queue_one_producer_two_consumers() {
    model_two_preemptions(|| {
        let q = Queue::on_heap(2, 8, Wait::PARK).unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut buf = Vec::new();
                    q.get(&mut buf, None).unwrap();
                    buf[0]
                })
            })
            .collect();
        q.put(&[7], None).unwrap();
        q.put(&[8], None).unwrap();
        let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [7, 8]);
    });
}

/// The lock makes a plain cell's read-modify-write exclusive: loom flags
/// any overlap as a data race.
#[test]
fn lock_excludes() {
    loom::model(|| {
        let lock = Lock::on_heap(Wait::PARK);
        let cell = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (lock, cell) = (lock.clone(), cell.clone());
                thread::spawn(move || {
                    let _g = lock.lock(None).unwrap();
                    // SAFETY: exclusive while the lock is held (what loom checks).
                    cell.with_mut(|p| unsafe { *p += 1 });
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: both threads joined.
        assert_eq!(cell.with(|p| unsafe { *p }), 2);
    });
}

/// The re-entrant lock: each thread takes it twice and lets go twice; the
/// cell's read-modify-write stays exclusive until the last let-go.
#[test]
fn rlock_re_entered_excludes() {
    loom::model(|| {
        let lock = RLock::on_heap(Wait::PARK);
        let cell = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (lock, cell) = (lock.clone(), cell.clone());
                thread::spawn(move || {
                    lock.acquire(None).unwrap();
                    lock.acquire(None).unwrap();
                    lock.release().unwrap();
                    // SAFETY: exclusive while the lock is held once more.
                    cell.with_mut(|p| unsafe { *p += 1 });
                    lock.release().unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: both threads joined.
        assert_eq!(cell.with(|p| unsafe { *p }), 2);
        assert_eq!(lock.holder(), None);
    });
}

/// The textbook handoff through a one-slot buffer guarded by a condition:
/// two items, each waited for with `wait_for` and no timeout. A wake-up
/// lost between a waiter's letting go of the lock and its sleep, or taken
/// by the wrong thread, is a deadlock here; a missing Release/Acquire pair
/// is a race on the slot.
fn condition_hands_over(wait: Wait) {
    model_two_preemptions(move || {
        let c = Condition::on_heap(wait);
        let slot = Arc::new(UnsafeCell::new(0u32));
        let consumer = {
            let (c, slot) = (c.clone(), slot.clone());
            thread::spawn(move || {
                for i in 1..=2 {
                    c.acquire(None).unwrap();
                    // SAFETY: the slot is read and written under the lock.
                    c.wait_for(|| slot.with(|p| unsafe { *p }) != 0, None)
                        .unwrap();
                    // SAFETY: as above.
                    assert_eq!(slot.with_mut(|p| unsafe { std::mem::take(&mut *p) }), i);
                    c.notify(1).unwrap();
                    c.release().unwrap();
                }
            })
        };
        for i in 1..=2 {
            c.acquire(None).unwrap();
            // SAFETY: as above.
            c.wait_for(|| slot.with(|p| unsafe { *p }) == 0, None)
                .unwrap();
            // SAFETY: as above.
            slot.with_mut(|p| unsafe { *p = i });
            c.notify(1).unwrap();
            c.release().unwrap();
        }
        consumer.join().unwrap();
    });
}

#[test]
fn condition_hands_over_park() {
    condition_hands_over(Wait::PARK);
}

#[test]
fn condition_hands_over_spin_park() {
    condition_hands_over(Wait::SPIN_PARK);
}

/// A barrier of two parties passed twice: every party's write before a
/// generation is seen by every party after it, the two arrival indices
/// of a generation differ, and nothing deadlocks.
#[test]
fn barrier_two_generations() {
    loom::model(|| {
        let b = Barrier::on_heap(2, Wait::PARK);
        let cells = Arc::new([UnsafeCell::new(0u32), UnsafeCell::new(0u32)]);
        let run = |b: Barrier, me: usize, cells: Arc<[UnsafeCell<u32>; 2]>| {
            let mut idx = Vec::new();
            for g in 1..=2 {
                // SAFETY: each thread writes its own cell between
                // generations and reads the other's only after one.
                cells[me].with_mut(|p| unsafe { *p = g });
                idx.push(b.wait(None).unwrap());
                // SAFETY: as above.
                assert!(cells[1 - me].with(|p| unsafe { *p }) >= g);
                idx.push(b.wait(None).unwrap());
            }
            idx
        };
        let t = {
            let (b, cells) = (b.handle().unwrap(), cells.clone());
            thread::spawn(move || run(b, 1, cells))
        };
        let mine = run(b, 0, cells);
        let theirs = t.join().unwrap();
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(a + b, 1, "the indices of a generation are 0 and 1");
        }
    });
}

/// A barrier aborted while a party waits: the waiter gets the barrier
/// broken, never a hang, and so does every later wait.
#[test]
fn barrier_aborted_under_a_waiter() {
    loom::model(|| {
        let b = Barrier::on_heap(2, Wait::PARK);
        let t = {
            let b = b.handle().unwrap();
            thread::spawn(move || b.wait(None))
        };
        b.abort();
        assert!(matches!(t.join().unwrap(), Err(BarrierError::Broken(_))));
        assert!(matches!(b.wait(None), Err(BarrierError::Broken(_))));
    });
}

/// A joinable queue: `put` raises the count before the item can be taken,
/// the consumer marks it done after working on it, and `join` returns only
/// then, seeing the work (a missing Release/Acquire pair on the count
/// shows up as a race on the cell).
#[test]
fn joinable_join_sees_the_work_done() {
    loom::model(|| {
        let q = ipcbench::shm::JoinableQueue::on_heap(2, 8, Wait::PARK).unwrap();
        let cell = Arc::new(UnsafeCell::new(0u32));
        let t = {
            let (q, cell) = (q.clone(), cell.clone());
            thread::spawn(move || {
                let mut buf = Vec::new();
                q.get(&mut buf, None).unwrap();
                // SAFETY: only this thread writes, before task_done.
                cell.with_mut(|p| unsafe { *p = u32::from(buf[0]) });
                q.task_done().unwrap();
            })
        };
        q.put(&[7], None).unwrap();
        q.join(None).unwrap();
        // SAFETY: join returned after task_done, which followed the write.
        assert_eq!(cell.with(|p| unsafe { *p }), 7);
        assert!(q.task_done().is_err(), "a task_done too many");
        t.join().unwrap();
    });
}

/// Two threads parked on an empty semaphore, two releases: each release
/// wakes exactly one sleeper, and both get a permit.
#[test]
fn semaphore_two_sleepers_two_releases() {
    loom::model(|| {
        let s = Arc::new(Semaphore::on_heap(0, 2, Wait::PARK));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.acquire(None).unwrap())
            })
            .collect();
        s.release().unwrap();
        s.release().unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    });
}

/// A counting semaphore hands a permit (and what was written before the
/// release) from one thread to another.
#[test]
fn semaphore_hands_over() {
    loom::model(|| {
        let sem = Semaphore::on_heap(0, 1, Wait::SPIN_PARK);
        let cell = Arc::new(UnsafeCell::new(0u32));
        let (s2, c2) = (sem.clone(), cell.clone());
        let t = thread::spawn(move || {
            // SAFETY: written before the release, read after the acquire.
            c2.with_mut(|p| unsafe { *p = 42 });
            s2.release().unwrap();
        });
        sem.acquire(None).unwrap();
        // SAFETY: see above.
        assert_eq!(cell.with(|p| unsafe { *p }), 42);
        t.join().unwrap();
    });
}

#[test]
fn event_publishes() {
    loom::model(|| {
        let ev = Event::on_heap(Wait::PARK);
        let cell = Arc::new(UnsafeCell::new(0u32));
        let (e2, c2) = (ev.clone(), cell.clone());
        let t = thread::spawn(move || {
            // SAFETY: written before set, read after wait.
            c2.with_mut(|p| unsafe { *p = 7 });
            e2.set();
        });
        assert!(ev.wait(None).unwrap());
        // SAFETY: see above.
        assert_eq!(cell.with(|p| unsafe { *p }), 7);
        t.join().unwrap();
    });
}

/// The spin floor: two exchanges of a word bounced between two sides.
#[test]
fn floor_spin_two_exchanges() {
    loom::model(|| {
        let f = Arc::new(Floor::on_heap(FloorKind::Spin, 8).unwrap());
        let b = f.clone();
        let t = thread::spawn(move || {
            for s in 0..2u64 {
                b.await_turn(2 * s + 1);
                b.post_turn(2 * s + 2);
            }
        });
        for s in 0..2u64 {
            f.post_turn(2 * s + 1);
            f.await_turn(2 * s + 2);
        }
        t.join().unwrap();
    });
}

/// The park floor: no wake-up is lost between posting and sleeping.
#[test]
fn floor_park_two_exchanges() {
    loom::model(|| {
        let f = Arc::new(Floor::on_heap(FloorKind::Park, 8).unwrap());
        let b = f.clone();
        let t = thread::spawn(move || {
            for v in 1..=2u32 {
                b.await_post(Dir::AToB, v);
                b.post(Dir::BToA, v);
            }
        });
        for v in 1..=2u32 {
            f.post(Dir::AToB, v);
            f.await_post(Dir::BToA, v);
        }
        t.join().unwrap();
    });
}

/// The copy floor of a stream: three messages through two slots, so a
/// slot is reused; every message arrives intact (a missing Release/Acquire
/// pair on the counts shows up as a race on the bytes).
#[test]
fn floor_copy_stream_wraps() {
    loom::model(|| {
        let f = Arc::new(Floor::on_heap(FloorKind::CopyStream, 8).unwrap());
        let tx = f.clone();
        let t = thread::spawn(move || {
            let mut head = 0;
            for i in 0..3u64 {
                tx.stream_send(i, &(i * 7).to_le_bytes(), &mut head);
            }
        });
        let mut tail = 0;
        for i in 0..3u64 {
            let v = f
                .stream_recv(i, &mut tail, |m| u64::from_le_bytes(m.try_into().unwrap()))
                .unwrap();
            assert_eq!(v, i * 7);
        }
        t.join().unwrap();
    });
}

/// The copy floor of a round trip: each side's slot is rewritten only
/// after the other has read it (the echo copies the A→B slot into the B→A
/// one without a buffer of its own).
#[test]
fn floor_copy_round_trip_two_exchanges() {
    loom::model(|| {
        let f = Arc::new(Floor::on_heap(FloorKind::CopyRoundTrip, 8).unwrap());
        let b = f.clone();
        let t = thread::spawn(move || {
            for seq in 0..2u64 {
                let v = b.trip_echo(seq, |m| m.to_vec()).unwrap();
                assert_eq!(v, (seq + 40).to_le_bytes());
            }
        });
        for seq in 0..2u64 {
            f.trip_send(Dir::AToB, seq, &(seq + 40).to_le_bytes());
            let v = f
                .trip_recv(Dir::BToA, seq, |m| {
                    u64::from_le_bytes(m.try_into().unwrap())
                })
                .unwrap();
            assert_eq!(v, seq + 40);
        }
        t.join().unwrap();
    });
}
