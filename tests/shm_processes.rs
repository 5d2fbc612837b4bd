//! The shared-memory core across real processes: every structure moves
//! checked data between separate `ipcbench peer` processes, survives a peer
//! killed mid-transfer, refuses foreign regions, and leaves nothing behind
//! in /dev/shm.
#![cfg(not(loom))]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ipcbench::harness::child::roles::Frames;
use ipcbench::shm::region::{Kind, Region};
use ipcbench::shm::{
    Barrier, Condition, JoinableQueue, Lock, Pipe, PipeError, Queue, QueueError, Ring, RingError,
    SemError, Semaphore, Wait, unique_name,
};

const DEADLINE: Duration = Duration::from_secs(240);

fn raw_region(name: &str, len: usize) -> Region {
    let r = Region::create(name, Kind::Raw, len, [0; 6]).unwrap();
    r.publish();
    r
}

#[test]
fn ring_moves_ten_million_random_frames_between_processes() {
    let name = unique_name("ring-10m");
    let ring = Ring::create(&name, 1 << 16, Wait::SPIN_PARK).unwrap();
    let (frames, seed, max_len) = (10_000_000u64, 7u64, 256usize);
    let deadline = Instant::now() + DEADLINE;
    let rx = spawn_peer(&args!["ring-recv", name, frames, seed, max_len]);
    let tx = spawn_peer(&args!["ring-send", name, frames, seed, max_len]);
    let out = finish_all(vec![rx, tx], deadline, "ring 1→1");
    let (recv, send) = (&out[0], &out[1]);
    assert_eq!(recv.report().messages, frames);
    assert_eq!(recv.report().bytes, send.report().bytes);
    let ns = recv.report().elapsed_ns.max(1);
    eprintln!(
        "ring 1→1 ({}): {frames} frames of 0–{max_len} B, every byte checked, in {:.2} s = {:.1} M frames/s",
        ring.wait(),
        ns as f64 / 1e9,
        frames as f64 * 1e3 / ns as f64
    );
    drop(ring);
    assert_gone(&[&name]);
}

/// 4 producers × 4 consumers over one queue: every item arrives exactly once.
fn queue_4x4(wait: Wait, total: u64) {
    let name = unique_name(&format!("queue-{wait}"));
    let seen_name = unique_name("queue-seen");
    let q = Queue::create(&name, 256, 16, wait).unwrap();
    let seen = raw_region(&seen_name, total as usize);
    let deadline = Instant::now() + DEADLINE;
    let per = total / 4;
    let getters: Vec<_> = (0..4)
        .map(|_| spawn_peer(&args!["queue-get", name, seen_name]))
        .collect();
    let putters: Vec<_> = (0..4)
        .map(|id| spawn_peer(&args!["queue-put", name, id, per]))
        .collect();
    let t0 = Instant::now();
    for p in finish_all(putters, deadline, "queue putters") {
        assert_eq!(p.report().messages, per);
    }
    q.close();
    let got: u64 = finish_all(getters, deadline, "queue getters")
        .iter()
        .map(|g| g.report().messages)
        .sum();
    let elapsed = t0.elapsed();
    assert_eq!(got, total, "{wait}: items received");
    // SAFETY: every peer has exited; the region is ours and `total` bytes long.
    let marks =
        unsafe { std::slice::from_raw_parts(seen.body_ptr() as *const AtomicU8, total as usize) };
    for (i, m) in marks.iter().enumerate() {
        let m = m.load(Ordering::Relaxed);
        assert_eq!(m, 1, "{wait}: item {i} received {m} times");
    }
    eprintln!(
        "queue 4×4 ({wait}, 8 peer processes on {} cores): {total} items in {:.2} s = {:.2} M items/s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
    drop((q, seen));
    assert_gone(&[&name, &seen_name]);
}

#[test]
fn queue_4x4_moves_a_million_items_exactly_once_spin_park() {
    queue_4x4(Wait::SPIN_PARK, 1_000_000);
}

#[test]
fn queue_4x4_moves_a_million_items_exactly_once_park() {
    queue_4x4(Wait::PARK, 1_000_000);
}

#[test]
fn queue_4x4_moves_items_exactly_once_spin_yield() {
    queue_4x4(Wait::SPIN_YIELD, 400_000);
}

/// Pure spinning with 8 processes on 2 cores is slow, but must finish.
#[test]
fn queue_4x4_pure_spin_oversubscribed_still_finishes() {
    queue_4x4(Wait::SPIN, 20_000);
}

#[test]
fn pipe_moves_16_mib_messages_both_ways_and_reports_end_of_stream() {
    let name = unique_name("pipe-16m");
    let pipe = Pipe::create(&name, 1 << 20, Wait::SPIN_PARK).unwrap();
    let mut end = pipe.end(0).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let echo = spawn_peer(&args!["pipe-echo", name]);
    let pat = Frames {
        seed: 3,
        max_len: 0,
    };
    let mut big = vec![0u8; 16 << 20];
    pat.fill(1, &mut big);
    let mut buf = Vec::new();
    let t = Some(Duration::from_secs(60));
    for msg in [&big[..], &[][..], &[42][..], &big[..]] {
        end.send(msg, t).unwrap();
        assert_eq!(end.recv(&mut buf, t).unwrap(), msg.len());
        assert!(buf == msg, "echo of a {}-byte message differs", msg.len());
    }
    drop(end);
    let f = finish(echo, deadline, "pipe echo");
    assert_eq!(
        f.report().messages,
        4,
        "the echo peer saw end-of-stream after 4 messages"
    );
    // And the other way: the peer closing its end is our end of stream,
    // after what it sent before closing.
    drop(pipe);
    assert_gone(&[&name]);
    let name = unique_name("pipe-close");
    let pipe = Pipe::create(&name, 1 << 12, Wait::PARK).unwrap();
    let mut end = pipe.end(0).unwrap();
    let echo = spawn_peer(&args!["pipe-echo", name, "--count", 1]);
    end.send(b"last", t).unwrap();
    assert_eq!(end.recv(&mut buf, t).unwrap(), 4);
    assert!(matches!(end.recv(&mut buf, t), Err(PipeError::Closed)));
    assert_eq!(finish(echo, deadline, "pipe echo 2").report().messages, 1);
    drop(end);
    drop(pipe);
    assert_gone(&[&name]);
}

fn semaphore_as_mutex(wait: Wait, iters: u64) {
    let sem_name = unique_name(&format!("sem-{wait}"));
    let counter_name = unique_name("sem-counter");
    let sem = Semaphore::create(&sem_name, 1, 1, wait).unwrap();
    let counter = raw_region(&counter_name, 8);
    let deadline = Instant::now() + DEADLINE;
    let peers: Vec<_> = (0..4)
        .map(|_| spawn_peer(&args!["sem-count", sem_name, counter_name, iters]))
        .collect();
    for f in finish_all(peers, deadline, "semaphore counters") {
        assert_eq!(f.report().messages, iters);
    }
    // SAFETY: all peers exited; the body is 8 bytes, aligned.
    let total = unsafe { std::ptr::read_volatile(counter.body_ptr() as *const u64) };
    assert_eq!(
        total,
        4 * iters,
        "{wait}: increments lost under the semaphore"
    );
    assert_eq!(sem.value(), 1);
    drop((sem, counter));
    assert_gone(&[&sem_name, &counter_name]);
}

#[test]
fn semaphore_as_mutex_of_4_processes_keeps_a_plain_counter_exact() {
    semaphore_as_mutex(Wait::SPIN_PARK, 50_000);
    semaphore_as_mutex(Wait::PARK, 20_000);
    semaphore_as_mutex(Wait::SPIN_YIELD, 20_000);
    semaphore_as_mutex(Wait::SPIN, 2_000);
}

/// Reads from `rx` until an error; returns it and how long after `kill_at` it came.
fn read_until_error(rx: &mut ipcbench::shm::Consumer, kill_at: Instant) -> (RingError, Duration) {
    let mut buf = Vec::new();
    loop {
        match rx.recv(&mut buf, Some(Duration::from_secs(30))) {
            Ok(_) => {}
            Err(e) => return (e, kill_at.elapsed()),
        }
    }
}

#[test]
fn a_killed_sender_is_reported_within_the_deadline() {
    for wait in Wait::ALL {
        let name = unique_name(&format!("kill-{wait}"));
        let ring = Ring::create(&name, 1 << 12, wait).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut tx = spawn_peer(&args!["ring-send", name, u64::MAX / 2, 1, 64]);
        // Let it get going, then kill it mid-stream.
        let mut buf = Vec::new();
        for _ in 0..1000 {
            rx.recv(&mut buf, Some(Duration::from_secs(30))).unwrap();
        }
        tx.kill().unwrap();
        let kill_at = Instant::now();
        tx.wait().unwrap();
        let (e, after) = read_until_error(&mut rx, kill_at);
        assert!(matches!(e, RingError::PeerGone(_)), "{wait}: {e}");
        assert!(e.to_string().contains("died"));
        eprintln!(
            "ring ({wait}): SIGKILLed sender reported {:.1} ms after the kill",
            after.as_secs_f64() * 1e3
        );
        drop((rx, ring));
        assert_gone(&[&name]);
    }
}

#[test]
fn a_killed_receiver_is_reported_to_a_blocked_sender() {
    let name = unique_name("kill-rx");
    let ring = Ring::create(&name, 1 << 12, Wait::SPIN_PARK).unwrap();
    let mut tx = ring.producer().unwrap();
    // A receiver expecting more frames than we send: it blocks, then dies.
    let mut rx = spawn_peer(&args!["ring-recv", name, 1_000_000, 5, 64]);
    let pat = Frames {
        seed: 5,
        max_len: 64,
    };
    let mut msg = Vec::new();
    for seq in 0..100 {
        msg.resize(pat.len(seq), 0);
        pat.fill(seq, &mut msg);
        tx.send(&msg, Some(Duration::from_secs(30))).unwrap();
    }
    rx.kill().unwrap();
    let kill_at = Instant::now();
    rx.wait().unwrap();
    let e = loop {
        if let Err(e) = tx.send(&[0; 64], Some(Duration::from_secs(30))) {
            break e;
        }
    };
    assert!(matches!(e, RingError::PeerGone(_)), "{e}");
    eprintln!(
        "ring: SIGKILLed receiver reported {:.1} ms after the kill",
        kill_at.elapsed().as_secs_f64() * 1e3
    );
    drop((tx, ring));
    assert_gone(&[&name]);
}

#[test]
fn a_killed_queue_producer_is_reported_to_a_blocked_consumer() {
    let name = unique_name("kill-queue");
    let q = Queue::create(&name, 64, 16, Wait::PARK).unwrap();
    let mut p = spawn_peer(&args!["queue-put", name, 0, u64::MAX / 4]);
    let mut buf = Vec::new();
    for _ in 0..100 {
        q.get(&mut buf, Some(Duration::from_secs(30))).unwrap();
    }
    p.kill().unwrap();
    let kill_at = Instant::now();
    p.wait().unwrap();
    let e = loop {
        match q.get(&mut buf, Some(Duration::from_secs(30))) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(e, QueueError::PeerGone(_)), "{e}");
    assert!(kill_at.elapsed() < Duration::from_secs(30));
    drop(q);
    assert_gone(&[&name]);
}

#[test]
fn a_pipe_peer_killed_mid_message_is_an_error_not_a_hang() {
    let name = unique_name("kill-pipe");
    let pipe = Pipe::create(&name, 1 << 12, Wait::SPIN_PARK).unwrap();
    let mut end = pipe.end(0).unwrap();
    let mut echo = spawn_peer(&args!["pipe-echo", name]);
    end.send(b"hello", Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    end.recv(&mut buf, Some(Duration::from_secs(30))).unwrap();
    echo.kill().unwrap();
    echo.wait().unwrap();
    // A large message fills the ring and then finds the reader gone.
    let e = end
        .send(&vec![1; 1 << 20], Some(Duration::from_secs(30)))
        .unwrap_err();
    assert!(matches!(e, PipeError::Ring(RingError::PeerGone(_))), "{e}");
    drop((end, pipe));
    assert_gone(&[&name]);
}

/// Byte offset of `ready` in the region header (see `RegionHeader`).
const READY_OFFSET: u64 = 88;

#[test]
fn foreign_and_mismatched_regions_are_refused_with_a_clear_error() {
    // Not ours at all.
    let junk = unique_name("junk");
    std::fs::write(format!("/dev/shm/{junk}"), vec![0xAB; 4096]).unwrap();
    let f = finish(
        spawn_peer(&args!["ring-recv", junk, 1, 1, 1]),
        Instant::now() + DEADLINE,
        "junk",
    );
    assert!(!f.success);
    assert!(f.stderr.contains("not an ipcbench region"), "{}", f.stderr);
    std::fs::remove_file(format!("/dev/shm/{junk}")).unwrap();

    // Ours, but from another layout version.
    let name = unique_name("old-version");
    let ring = Ring::create(&name, 4096, Wait::PARK).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    file.seek(SeekFrom::Start(READY_OFFSET)).unwrap();
    file.write_all(&999u32.to_le_bytes()).unwrap();
    let f = finish(
        spawn_peer(&args!["ring-recv", name, 1, 1, 1]),
        Instant::now() + DEADLINE,
        "version",
    );
    assert!(!f.success);
    assert!(
        f.stderr.contains("layout version 999") && f.stderr.contains("same ipcbench build"),
        "{}",
        f.stderr
    );

    // A queue opened as a ring.
    let qname = unique_name("a-queue");
    let q = Queue::create(&qname, 4, 8, Wait::PARK).unwrap();
    let f = finish(
        spawn_peer(&args!["ring-recv", qname, 1, 1, 1]),
        Instant::now() + DEADLINE,
        "kind",
    );
    assert!(f.stderr.contains("holds a Queue"), "{}", f.stderr);
    drop((ring, q));
    assert_gone(&[&name, &qname]);
}

/// The clean tests one at a time: each one's stale files are stale to the
/// other's `clean` too.
static CLEANING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn clean_removes_leftovers_of_dead_creators_only_and_a_dry_run_nothing() {
    let _one = CLEANING.lock().unwrap_or_else(|e| e.into_inner());
    // A region whose creator died: made by a child that is killed before it
    // can unlink (simulated by writing a header with a reaped child's pid).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = unique_name("dead-creator");
    let mut header = vec![0u8; 4096];
    header[..8].copy_from_slice(b"IPCBENCH");
    header[12..16].copy_from_slice(&dead_pid.to_le_bytes());
    // A start time no process has, so a reused pid does not look alive.
    header[16..24].copy_from_slice(&1u64.to_le_bytes());
    std::fs::write(format!("/dev/shm/{dead}"), &header).unwrap();
    let live = unique_name("live-creator");
    let kept = raw_region(&live, 64);

    // A dry run says what it would remove and removes nothing.
    let out = std::process::Command::new(bin())
        .args(["clean", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("would remove {dead}")), "{text}");
    assert!(text.contains(&format!("kept    {live}")), "{text}");
    assert!(
        std::path::Path::new(&format!("/dev/shm/{dead}")).exists(),
        "--dry-run removed {dead}"
    );

    let out = std::process::Command::new(bin())
        .arg("clean")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("removed {dead}")), "{text}");
    assert!(text.contains(&format!("kept    {live}")), "{text}");
    assert_gone(&[&dead]);
    assert!(kept.path().exists());
    drop(kept);
    assert_gone(&[&live]);
}

/// `ipcbench clean` in a /dev/shm it cannot trust: a Python baseline's file
/// is kept while its process runs however old it is, and removed once it is
/// gone; a directory, a FIFO (opening one would wait for ever) and a
/// symbolic link carrying our prefix are not files ipcbench makes and are
/// left alone; and a stale file it may not remove (another user's, in the
/// sticky /dev/shm) is said, the rest is still cleaned, and the exit status
/// says not everything was.
#[test]
fn clean_keeps_what_is_alive_or_not_ours_and_goes_on_past_what_it_cannot_remove() {
    let _one = CLEANING.lock().unwrap_or_else(|e| e.into_inner());
    use std::os::unix::fs::PermissionsExt;
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    let touch_old = |path: &str| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(old))
            .unwrap();
    };
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let tag = unique_name("t").replace("ipcbench-", "").replace('-', "");
    let py_live = format!("ipcbench-py-{}-{tag}", std::process::id());
    let py_dead = format!("ipcbench-py-{dead_pid}-{tag}");
    let dir = format!("ipcbench-zz-dir-{tag}");
    let fifo = format!("ipcbench-zz-fifo-{tag}");
    let link = format!("ipcbench-zz-link-{tag}");
    let theirs = format!("ipcbench-{dead_pid}-{tag}-theirs");
    let roots = format!("ipcbench-{dead_pid}-{tag}-roots");
    // Whatever is left when the test ends, passed or failed, is removed.
    struct Tidy(Vec<String>);
    impl Drop for Tidy {
        fn drop(&mut self) {
            for name in &self.0 {
                let p = format!("/dev/shm/{name}");
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
            }
        }
    }
    let _tidy = Tidy(
        [&py_live, &py_dead, &dir, &fifo, &link, &theirs, &roots]
            .map(|s| s.clone())
            .to_vec(),
    );
    for name in [&py_live, &py_dead] {
        let path = format!("/dev/shm/{name}");
        std::fs::write(&path, [0u8; 64]).unwrap();
        touch_old(&path);
    }
    std::fs::create_dir(format!("/dev/shm/{dir}")).unwrap();
    let c = std::ffi::CString::new(format!("/dev/shm/{fifo}")).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(format!("/dev/shm/{py_live}"), format!("/dev/shm/{link}")).unwrap();

    let run_clean = |as_nobody: bool| {
        let mut cmd = std::process::Command::new(bin());
        cmd.arg("clean")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if as_nobody {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        // A hang detector: clean lists and removes at once.
        cmd.spawn()
            .map(|c| finish(c, Instant::now() + Duration::from_secs(120), "clean"))
    };
    let out = run_clean(false).unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    let gone = |name: &str| std::fs::symlink_metadata(format!("/dev/shm/{name}")).is_err();
    let checks = [
        (py_live.as_str(), "kept    ", "is running", false),
        (py_dead.as_str(), "removed ", "is gone", true),
        (
            dir.as_str(),
            "kept    ",
            "a directory, not a file ipcbench makes",
            false,
        ),
        (fifo.as_str(), "kept    ", "a FIFO, socket or device", false),
        (link.as_str(), "kept    ", "a symbolic link", false),
    ];
    for (name, verb, why, removed) in checks {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("clean did not mention {name}:\n{text}"));
        assert!(
            line.starts_with(verb) && line.contains(why),
            "{name}: said {line:?}"
        );
        assert_eq!(gone(name), removed, "{name}: {line}");
    }
    assert!(out.success, "{text}");

    // As another user: root's stale file cannot be removed (and its
    // header cannot be read), that user's own stale file can.
    for name in [&theirs, &roots] {
        let path = format!("/dev/shm/{name}");
        std::fs::write(&path, [0u8; 64]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        touch_old(&path);
    }
    std::os::unix::fs::chown(format!("/dev/shm/{theirs}"), Some(65534), Some(65534)).unwrap();
    match run_clean(true) {
        // Becoming nobody, or nobody running the binary (a checkout in a
        // directory only root may enter), can be refused: then this half
        // cannot be shown here.
        Err(e) => eprintln!("skipped the other user's half: cannot run clean as nobody: {e}"),
        Ok(out) => {
            let text = format!("{}{}", out.stdout, out.stderr);
            assert!(
                !out.success,
                "clean succeeded though it left {roots}:\n{text}"
            );
            assert!(gone(&theirs), "{text}");
            assert!(!gone(&roots), "{text}");
            assert!(
                text.lines()
                    .any(|l| l.starts_with("could not remove") && l.contains(&roots)),
                "{text}"
            );
            assert!(
                text.contains("could not be removed") && text.contains("as their owner or as root"),
                "{text}"
            );
        }
    }
}

/// A lock's holder killed at any moment — just after it took the lock,
/// just before it gives it back — leaves the lock free or held by a
/// holder it names: the next taker gets the lock or hears who died, and
/// never waits forever. `IPCBENCH_KILLS` kills (50 by default), each at a
/// random moment of a process taking and releasing the lock in a loop.
#[test]
fn a_lock_holder_killed_at_any_moment_leaves_the_lock_free_or_named() {
    let kills = kills();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let (mut free, mut dead) = (0, 0);
    for k in 0..kills {
        let name = unique_name("lock-kill");
        let lock = Lock::create(&name, Wait::SPIN_PARK).unwrap();
        let mut child = spawn_peer(&args!["lock-churn", name, u64::MAX]);
        let pid = child.id();
        // Once it churns (the lock seen taken), kill it 0–2 ms later.
        let start = Instant::now();
        while !lock.is_locked() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "kill {k}: the churning peer never took the lock (hang detector)"
            );
            std::hint::spin_loop();
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 2_000));
        child.kill().unwrap();
        child.wait().unwrap();
        // A lock left free is taken at once; one held by the dead peer is
        // reported within the dead-peer check. Two seconds is a hang
        // detector, many times either.
        match lock.acquire(Some(Duration::from_secs(2))) {
            Ok(()) => {
                free += 1;
                lock.release();
            }
            Err(SemError::PeerGone(p)) => {
                assert_eq!(p.pid, pid, "kill {k}: the wrong holder named");
                dead += 1;
                // Taken over from the dead, then as good as new.
                assert!(lock.take_over(p), "kill {k}: not taken over");
                lock.release();
                assert!(lock.try_acquire(), "kill {k}: not free after the take-over");
                lock.release();
            }
            Err(e) => panic!(
                "kill {k}: after its holder (pid {pid}) was killed, taking the lock failed: {e} \
                 (held, with no holder named)"
            ),
        }
        drop(lock);
        assert_gone(&[&name]);
    }
    eprintln!("{kills} kills: the lock was left free {free} times, held by the dead {dead} times");
}

/// A putter killed while its put waits for room (the joinable count
/// already raised for its item) makes `join` fail naming it, not wait
/// for an item that will never come.
#[test]
fn a_putter_killed_mid_put_fails_join_instead_of_hanging_it() {
    for wait in [Wait::SPIN_PARK, Wait::PARK] {
        let name = unique_name("jq-kill");
        let q = JoinableQueue::create(&name, 2, 8, wait).unwrap();
        // Full: the putter's item waits for room.
        q.put(&[1; 8], None).unwrap();
        q.put(&[2; 8], None).unwrap();
        let mut putter = spawn_peer(&args!["joinable-put", name, 1]);
        let pid = putter.id();
        let start = Instant::now();
        while q.unfinished() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{wait}: the putter never began its put (hang detector)"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        putter.kill().unwrap();
        putter.wait().unwrap();
        let mut buf = Vec::new();
        for _ in 0..2 {
            q.get(&mut buf, Some(Duration::from_secs(5))).unwrap();
            q.task_done().unwrap();
        }
        // Two seconds: a hang detector, far beyond the dead-peer check.
        match q.join(Some(Duration::from_secs(2))) {
            Err(QueueError::PeerGone(p)) => assert_eq!(p.pid, pid, "{wait}: the wrong peer named"),
            other => panic!(
                "{wait}: join after the putter (pid {pid}) died mid-put: {other:?}, not PeerGone"
            ),
        }
        drop(q);
        assert_gone(&[&name, &format!("{name}-join")]);
    }
}

/// Lock, Semaphore, Event, Value, Array, an atomic Value and JoinableQueue
/// between two real processes under every waiting strategy, through the
/// same peers the suite measures with: a counter incremented under the
/// lock (or atomically) ends exact, events ping-pong, every joinable item
/// is marked done and `join` returns. Without the lock the same counter
/// loses increments, and the point fails: the check can fail.
#[test]
fn every_primitive_works_between_processes_under_every_wait() {
    use ipcbench::harness::RunOpts;
    use ipcbench::harness::sync::{Prim, SyncSpec, run_point};
    let opts = RunOpts {
        exe: bin().into(),
        warmup: 100,
        fixed_count: Some(5_000),
        deadline: Duration::from_secs(60),
        ..RunOpts::default()
    };
    let waits = [Wait::SPIN, Wait::SPIN_YIELD, Wait::SPIN_PARK, Wait::PARK];
    let mut measured = 0;
    for prim in Prim::ALL {
        for wait in waits {
            let spec = SyncSpec {
                prim,
                procs: 2,
                wait,
                permits: 1,
            };
            let rec = run_point(&spec, &opts);
            let what = format!("{} {}", prim.name(), wait.label());
            if rec.is_skipped() {
                eprintln!("{what}: skipped: {}", rec.error.as_deref().unwrap_or(""));
                continue;
            }
            assert_eq!(
                rec.status,
                ipcbench::record::Status::Ok,
                "{what}: {:?}",
                rec.error
            );
            assert!(rec.messages > 0, "{what}: nothing measured");
            measured += 1;
        }
    }
    assert!(measured >= Prim::ALL.len() * 3, "only {measured} measured");
    // The check that makes the counts above mean something.
    for prim in [Prim::Value, Prim::Atomic] {
        let spec = SyncSpec {
            prim,
            procs: 2,
            wait: Wait::SPIN_PARK,
            permits: 0,
        };
        let rec = run_point(&spec, &opts);
        assert_eq!(
            rec.status,
            ipcbench::record::Status::Failed,
            "{}: unlocked increments were not caught",
            prim.name()
        );
        assert!(
            rec.error
                .as_deref()
                .unwrap_or("")
                .contains("increments were lost"),
            "{:?}",
            rec.error
        );
    }
}

/// A consumer killed while parked cannot leave its sleeper counted for
/// good (every later send would make a wake-up system call for nobody):
/// the first wake-up that finds nobody asleep drops the count.
#[test]
fn a_parked_consumer_killed_is_not_counted_asleep_for_good() {
    let name = unique_name("sleepers");
    let ring = Ring::create(&name, 4096, Wait::PARK).unwrap();
    let mut rx = spawn_peer(&args!["ring-recv", name, 1_000_000, 5, 64]);
    let t = Instant::now();
    while ring.sleepers().0 == 0 {
        assert!(t.elapsed() < HANG, "the consumer never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Parked (counted and asleep, or about to be): kill it there.
    rx.kill().unwrap();
    rx.wait().unwrap();
    assert_eq!(ring.sleepers().0, 1, "the killed consumer is still counted");
    let mut tx = ring.producer().unwrap();
    tx.send(&[1; 8], Some(Duration::from_secs(1))).unwrap();
    assert_eq!(
        ring.sleepers().0,
        0,
        "the send's wake-up found nobody yet left the count"
    );
}

/// A barrier, a counter and the lock over it, for `parties` peers.
struct BarrierRig {
    barrier: Barrier,
    counter: Region,
    /// Kept for its region: the peers open it.
    _lock: Lock,
    names: [String; 3],
}

impl BarrierRig {
    fn new(parties: u32, wait: Wait) -> BarrierRig {
        let names = [
            unique_name("barrier"),
            unique_name("barrier-counter"),
            unique_name("barrier-lock"),
        ];
        BarrierRig {
            barrier: Barrier::create(&names[0], parties, wait).unwrap(),
            counter: raw_region(&names[1], 64),
            _lock: Lock::create(&names[2], wait).unwrap(),
            names,
        }
    }

    fn spawn(&self, rounds: u64) -> std::process::Child {
        let [b, c, l] = &self.names;
        spawn_peer(&args!["barrier-cycle", b, c, l, rounds])
    }

    fn counter(&self) -> u64 {
        // SAFETY: an aligned 8-byte read inside the raw region's body.
        unsafe { (self.counter.body_ptr() as *const u64).read_volatile() }
    }
}

/// Three processes pass a barrier 2 000 times (twice per round), each
/// adding to a shared counter under a lock between passes: the counter is
/// exact at every generation (each peer checks), under every wait.
#[test]
fn a_barrier_cycles_between_processes_with_the_counter_exact_at_every_generation() {
    for wait in [Wait::SPIN_PARK, Wait::PARK] {
        let rig = BarrierRig::new(3, wait);
        let peers = (0..3).map(|_| rig.spawn(2_000)).collect();
        for f in finish_all(peers, Instant::now() + DEADLINE, "barrier-cycle") {
            assert_eq!(f.report().messages, 2_000, "{wait}");
        }
        assert_eq!(rig.counter(), 3 * 2_000, "{wait}");
        assert!(!rig.barrier.is_broken());
        let names = rig.names.clone();
        drop(rig);
        assert_gone(&names.each_ref().map(String::as_str));
    }
}

/// A party killed while the others cycle through a barrier: the barrier
/// breaks for them within the liveness interval, the dead one named; the
/// survivors fail, they do not hang (`multiprocessing` would wait for
/// ever).
#[test]
fn a_party_killed_at_a_barrier_breaks_it_for_the_others_and_is_named() {
    let rig = BarrierRig::new(3, Wait::SPIN_PARK);
    let mut peers: Vec<_> = (0..3).map(|_| rig.spawn(u64::MAX)).collect();
    let t = Instant::now();
    while rig.counter() < 300 {
        assert!(
            t.elapsed() < HANG,
            "the parties never cycled (hang detector)"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let victim = peers.remove(1);
    let pid = victim.id();
    let mut victim = victim;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    // A hang detector: the liveness check runs every few ms.
    for f in finish_all(peers, killed + HANG, "barrier survivors") {
        assert!(!f.success, "a survivor passed a barrier missing a party");
        let said = format!("{}{}", f.stdout, f.stderr);
        assert!(
            said.contains(&format!("process {pid} died before arriving")),
            "a survivor did not name the dead party (pid {pid}): {said}"
        );
    }
    eprintln!("broken and named {:?} after the kill", killed.elapsed());
    assert!(rig.barrier.is_broken());
}

/// A waiter on a condition whose notifier took the lock and died holding
/// it: the wait reports the dead holder (nobody can notify any more)
/// instead of hanging, and the lock can be taken over from it.
#[test]
fn a_condition_waiter_whose_notifier_died_holding_the_lock_hears_who() {
    let name = unique_name("cond-dead");
    let c = Condition::create(&name, Wait::SPIN_PARK).unwrap();
    c.acquire(None).unwrap();
    let mut notifier = spawn_peer(&args!["condition-hold", name]);
    let pid = notifier.id();
    let killer = {
        let c = Condition::open(&name).unwrap();
        std::thread::spawn(move || {
            let t = Instant::now();
            while c.holder().map(|p| p.pid) != Some(pid) {
                assert!(t.elapsed() < HANG, "the notifier never took the lock");
                std::thread::sleep(Duration::from_millis(1));
            }
            notifier.kill().unwrap();
            notifier.wait().unwrap();
            Instant::now()
        })
    };
    // A hang detector: far longer than the liveness check.
    let e = c.wait(Some(HANG)).unwrap_err();
    let killed = killer.join().unwrap();
    match e {
        SemError::PeerGone(p) => {
            assert_eq!(p.pid, pid);
            assert_eq!(c.waiting(), 0, "the waiter kept its slot");
            assert!(c.take_over(p), "the lock could not be taken over");
            c.notify_all().unwrap();
            c.release().unwrap();
        }
        e => panic!("the wait did not name its dead notifier (pid {pid}): {e}"),
    }
    eprintln!("dead notifier named {:?} after the kill", killed.elapsed());
    drop(c);
    assert_gone(&[&name]);
}
