//! A queue whose producers can wait until every item put has been
//! processed, like `multiprocessing.JoinableQueue`: consumers call
//! [`JoinableQueue::task_done`] once per item they got, and
//! [`JoinableQueue::join`] returns once the count of unfinished items is
//! zero.
//!
//! The count lives in a small region beside the queue's (`<name>-join`).
//! `put` raises it *before* the item enters the queue, so `join` can never
//! see zero while an item is queued or being processed; `task_done` lowers
//! it and wakes joiners when it reaches zero. A `task_done` too many is an
//! error, not a wrap-around. A consumer that died before marking its item
//! done, or a producer that died between raising the count and its item
//! entering the queue (a put waiting for room, say), makes `join` fail
//! with [`QueueError::PeerGone`] instead of waiting forever. A producer
//! says it is inside a put in its registration's role word, set before the
//! count is raised and cleared after the item is in, so no moment exists
//! when a raised count has no live or named owner; one that dies just
//! before raising it or just after its item went in is named all the same
//! (a `join` that fails where it might have returned, never one that
//! hangs).

use crate::shm::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(loom))]
use super::mem::Backing;
use super::mem::{Shared, SlotLayout};
use super::queue::{Queue, QueueError};
#[cfg(not(loom))]
use super::region::{Kind, Region};
use super::sync::CachePadded;
use super::wait::{Notifier, Wait, WaitCtx, block_until};

/// The shared count and where joiners sleep.
#[repr(C)]
struct JoinCtrl {
    unfinished: CachePadded<AtomicU64>,
    done: CachePadded<Notifier>,
}

impl JoinCtrl {
    fn new() -> JoinCtrl {
        JoinCtrl {
            unfinished: CachePadded(AtomicU64::new(0)),
            done: CachePadded(Notifier::new()),
        }
    }
}

/// Marks the region of a joinable queue's count.
#[cfg(not(loom))]
const JOIN_MAGIC: u64 = 0x4a4f_494e_4142_4c45; // "JOINABLE"

#[cfg(not(loom))]
fn join_name(name: &str) -> String {
    format!("{name}-join")
}

/// A handle on a joinable queue (one per process or thread, as [`Queue`]).
#[derive(Clone)]
pub struct JoinableQueue {
    queue: Queue,
    join: Arc<Shared<JoinCtrl>>,
    wait: Wait,
}

impl JoinableQueue {
    /// A joinable queue on the heap, for threads of one process.
    pub fn on_heap(
        capacity: usize,
        slot_size: usize,
        wait: Wait,
    ) -> Result<JoinableQueue, QueueError> {
        let queue = Queue::on_heap(capacity, slot_size, wait)?;
        let join = Shared::heap(JoinCtrl::new(), 0, SlotLayout::NONE, &|_| 0);
        Ok(JoinableQueue {
            queue,
            join: Arc::new(join),
            wait,
        })
    }

    /// Creates a joinable queue of `capacity` slots of `slot_size` bytes in
    /// new regions `name` and `name-join`.
    #[cfg(not(loom))]
    pub fn create(
        name: &str,
        capacity: usize,
        slot_size: usize,
        wait: Wait,
    ) -> Result<JoinableQueue, QueueError> {
        let queue = Queue::create(name, capacity, slot_size, wait)?;
        let region = Region::create(
            &join_name(name),
            Kind::Raw,
            Shared::<JoinCtrl>::footprint(0),
            [JOIN_MAGIC, 0, 0, 0, 0, 0],
        )?;
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: the body is exactly one footprint, new and unpublished.
        let join = unsafe {
            Shared::place(
                backing.clone(),
                0,
                Some(JoinCtrl::new()),
                0,
                SlotLayout::NONE,
                None,
            )
        };
        if let Some(r) = backing.region() {
            r.publish();
        }
        Ok(JoinableQueue {
            queue,
            join: Arc::new(join),
            wait,
        })
    }

    /// Opens the joinable queue `name`.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<JoinableQueue, QueueError> {
        let queue = Queue::open(name)?;
        // Its creator makes the count's region right after the queue's.
        let region = Region::open_made_next(&join_name(name), Kind::Raw)?;
        if region.params()[0] != JOIN_MAGIC || region.body_len() < Shared::<JoinCtrl>::footprint(0)
        {
            return Err(QueueError::Region(
                region.bad_params("not a joinable queue's count"),
            ));
        }
        let backing = Arc::new(Backing::Region(region));
        // SAFETY: published by its creator, and large enough (checked).
        let join = unsafe { Shared::place(backing, 0, None, 0, SlotLayout::NONE, None) };
        let wait = queue.wait();
        Ok(JoinableQueue {
            queue,
            join: Arc::new(join),
            wait,
        })
    }

    fn ctrl(&self) -> &JoinCtrl {
        self.join.ctrl()
    }

    /// The queue beneath (its `get`s need no marking; `put`s here would
    /// escape the count: use [`JoinableQueue::put`]).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Puts `item`, counting it unfinished until a consumer marks it done.
    /// A handle the queue cannot track (more processes than it has
    /// registration slots) is refused: its death mid-put would hang `join`.
    pub fn put(&self, item: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        if !self.queue.mark_putting(true) {
            return Err(QueueError::Untracked);
        }
        let c = self.ctrl();
        // Release: a joiner that sees the raised count (and then our death)
        // sees the mark above too. The queue's own put publishes the item;
        // the count is raised before the item can be taken.
        c.unfinished.fetch_add(1, Ordering::Release);
        let r = self.queue.put(item, timeout).inspect_err(|_| {
            // Not put: not pending. Lowering it may reach zero.
            self.finish_one();
        });
        self.queue.mark_putting(false);
        r
    }

    /// Takes the oldest item (see [`Queue::get`]); mark it done afterwards.
    pub fn get(&self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<usize, QueueError> {
        self.queue.get(buf, timeout)
    }

    /// Marks one item got as processed.
    pub fn task_done(&self) -> Result<(), QueueError> {
        let c = self.ctrl();
        // Relaxed: a guess, corrected by the CAS.
        let mut n = c.unfinished.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return Err(QueueError::TooManyTaskDone);
            }
            // SYNC POINT: task done — Release: the consumer's work on the
            // item is visible to a joiner that reads the count with Acquire.
            match c
                .unfinished
                .compare_exchange_weak(n, n - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            c.done.notify(u32::MAX);
        }
        Ok(())
    }

    fn finish_one(&self) {
        let c = self.ctrl();
        if c.unfinished.fetch_sub(1, Ordering::Release) == 1 {
            c.done.notify(u32::MAX);
        }
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> u64 {
        // Relaxed: a snapshot.
        self.ctrl().unfinished.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` (`None`: forever) until every item put has
    /// been marked done. Fails with `PeerGone` if a consumer died, or a
    /// producer died inside a put.
    pub fn join(&self, timeout: Option<Duration>) -> Result<(), QueueError> {
        let c = self.ctrl();
        let ctx = WaitCtx {
            wait: self.wait,
            notifier: &c.done,
            timeout,
            dead_peer: || self.queue.dead_getter_or_putting(),
        };
        // SYNC POINT: task done — Acquire pairs with task_done's Release.
        block_until(ctx, || {
            (c.unfinished.load(Ordering::Acquire) == 0).then_some(())
        })
        .map_err(QueueError::from)
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::unique_name;

    #[test]
    fn an_opener_between_the_two_regions_waits_for_the_second() {
        let name = unique_name("jq-open");
        // What `create` does, with an opener coming between its two steps.
        let queue = Queue::create(&name, 8, 16, Wait::SPIN_PARK).unwrap();
        let n = name.clone();
        let opener = std::thread::spawn(move || JoinableQueue::open(&n).map(drop));
        std::thread::sleep(Duration::from_millis(20));
        let region = Region::create(
            &join_name(&name),
            Kind::Raw,
            Shared::<JoinCtrl>::footprint(0),
            [JOIN_MAGIC, 0, 0, 0, 0, 0],
        )
        .unwrap();
        region.publish();
        opener.join().unwrap().unwrap();
        drop(queue);
    }

    #[test]
    fn join_waits_for_every_task_done_and_extra_ones_fail() {
        let name = unique_name("jq");
        let q = JoinableQueue::create(&name, 8, 16, Wait::SPIN_PARK).unwrap();
        q.join(Some(Duration::ZERO)).unwrap();
        q.put(b"a", None).unwrap();
        q.put(b"b", None).unwrap();
        assert_eq!(q.unfinished(), 2);
        let mut buf = Vec::new();
        q.get(&mut buf, None).unwrap();
        q.task_done().unwrap();
        assert!(matches!(
            q.join(Some(Duration::from_millis(20))),
            Err(QueueError::Timeout)
        ));
        q.get(&mut buf, None).unwrap();
        q.task_done().unwrap();
        q.join(Some(Duration::ZERO)).unwrap();
        assert!(matches!(q.task_done(), Err(QueueError::TooManyTaskDone)));
        assert_eq!(q.unfinished(), 0);
        // A put that fails (the queue closed) is not left pending.
        q.close();
        assert!(q.put(b"c", None).is_err());
        q.join(Some(Duration::ZERO)).unwrap();
    }

    #[test]
    fn join_never_returns_before_the_work_is_done() {
        let name = unique_name("jq2");
        let q = JoinableQueue::create(&name, 64, 8, Wait::SPIN_PARK).unwrap();
        // Items processed, written by consumers before their task_done.
        let processed = Arc::new(AtomicU64::new(0));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let (name, processed) = (name.clone(), processed.clone());
                std::thread::spawn(move || {
                    let q = JoinableQueue::open(&name).unwrap();
                    let mut buf = Vec::new();
                    loop {
                        match q.get(&mut buf, None) {
                            Ok(_) => {}
                            Err(QueueError::Closed) => return,
                            Err(e) => panic!("{e}"),
                        }
                        processed.fetch_add(1, Ordering::Relaxed);
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        let mut put = 0u64;
        for round in 0..2_000u64 {
            for i in 0..(round % 7) + 1 {
                q.put(&(round * 8 + i).to_le_bytes(), None).unwrap();
                put += 1;
            }
            q.join(Some(Duration::from_secs(30))).unwrap();
            // task_done's Release / join's Acquire: every item counted.
            assert_eq!(processed.load(Ordering::Relaxed), put, "round {round}");
        }
        q.close();
        for c in consumers {
            c.join().unwrap();
        }
    }
}
