//! The floors' peers: the timing around the protocols of
//! [`crate::shm::floor`] — one word bounced between two processes, a
//! futex ping-pong, and the copy floors of a stream and of a round trip.
//! Each floor has one body, taking its first exchange, so a point and a
//! session's rounds run the same code.

use super::super::control::PeerReport;
use super::super::measure::{cpu_time_ns, histogram, now_ns, summary};
use super::bodies::{STAMP_EVERY, busy_for, timed_exchanges_from};
use crate::harness::spec::Pattern;
use crate::shm::floor::{Dir, Floor, FloorKind};

/// The floor of `kind` that a point of `pattern` with `wait_parks`
/// measures: the copy floor of a stream, the park floor (a late answer
/// parks too), or the spin floor.
pub fn kind_for(copy_round_trip: bool, pattern: Pattern, wait_parks: bool) -> FloorKind {
    if copy_round_trip {
        FloorKind::CopyRoundTrip
    } else if pattern == Pattern::Stream {
        FloorKind::CopyStream
    } else if wait_parks {
        FloorKind::Park
    } else {
        FloorKind::Spin
    }
}

/// Runs this side of `floor` from exchange (or message) `first`:
/// `warmup` untimed, then `iters` timed. `think_ns` is how long the park
/// floor's echo works before it answers (0 but for `pingpong-late`).
pub fn run(
    floor: &Floor,
    initiator: bool,
    first: u64,
    (warmup, iters): (u64, u64),
    think_ns: u64,
) -> Result<PeerReport, String> {
    match floor.kind() {
        FloorKind::Spin => spin(floor, initiator, first, warmup, iters),
        FloorKind::Park => park(floor, initiator, first, (warmup, iters), think_ns),
        FloorKind::CopyStream => stream(floor, initiator, warmup, iters),
        FloorKind::CopyRoundTrip => copy_round_trip(floor, initiator, warmup, iters),
    }
}

/// The answering side of a round-trip floor: `total` exchanges from
/// `first`, each `step(seq)`, with its CPU time.
fn answer(
    first: u64,
    total: u64,
    mut step: impl FnMut(u64) -> Result<(), String>,
) -> Result<PeerReport, String> {
    let cpu0 = cpu_time_ns();
    for seq in first..first + total {
        step(seq)?;
    }
    Ok(PeerReport {
        messages: total,
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// The spin floor: side A posts `2s + 1` and waits for `2s + 2`; side B
/// the reverse.
fn spin(
    floor: &Floor,
    initiator: bool,
    first: u64,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    if initiator {
        timed_exchanges_from(first, warmup, iters, |seq| {
            floor.post_turn(2 * seq + 1);
            floor.await_turn(2 * seq + 2);
            Ok(())
        })
    } else {
        answer(first, warmup + 2 * iters, |seq| {
            floor.await_turn(2 * seq + 1);
            floor.post_turn(2 * seq + 2);
            Ok(())
        })
    }
}

/// The park floor: a futex ping-pong, every hand-off a wake-up; the echo
/// works `think_ns` on each step before it answers.
fn park(
    floor: &Floor,
    initiator: bool,
    first: u64,
    (warmup, iters): (u64, u64),
    think_ns: u64,
) -> Result<PeerReport, String> {
    if initiator {
        timed_exchanges_from(first, warmup, iters, |seq| {
            let v = seq as u32 + 1;
            floor.post(Dir::AToB, v);
            floor.await_post(Dir::BToA, v);
            Ok(())
        })
    } else {
        answer(first, warmup + 2 * iters, |seq| {
            let v = seq as u32 + 1;
            floor.await_post(Dir::AToB, v);
            busy_for(think_ns);
            floor.post(Dir::BToA, v);
            Ok(())
        })
    }
}

/// Numbers a floor's message `i` in its first and last 8 bytes (`buf`
/// holds at least 8).
fn number_ends(buf: &mut [u8], i: u64) {
    let n = buf.len();
    buf[..8].copy_from_slice(&i.to_le_bytes());
    buf[n - 8..].copy_from_slice(&i.to_le_bytes());
}

/// Checks that a floor's message carries number `i` at both ends (`buf`
/// holds at least 8 bytes).
fn check_ends(buf: &[u8], i: u64) -> Result<(), String> {
    let n = buf.len();
    let at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]));
    match (at(0), at(n - 8)) {
        (a, b) if a == i && b == i => Ok(()),
        (a, b) => Err(format!(
            "message {i}: carries {a} at its start and {b} at its end"
        )),
    }
}

/// The copy floor of a stream: the sender copies each message from its
/// own buffer into a slot, numbered at both ends, one in [`STAMP_EVERY`]
/// with its send time; the receiver copies it out into its own buffer and
/// checks its number. No framing, no checksum: a plain copy in and a plain
/// copy out, the least a copying channel does.
fn stream(floor: &Floor, sender: bool, warmup: u64, iters: u64) -> Result<PeerReport, String> {
    let total = warmup + iters;
    let cpu0 = cpu_time_ns();
    let mut buf = vec![0x5Au8; floor.size()];
    if sender {
        let first = now_ns();
        for i in 0..total {
            number_ends(&mut buf, i);
            let t = if i >= warmup && i % STAMP_EVERY == 0 {
                now_ns()
            } else {
                0
            };
            floor.stream_send(i, &buf, t);
        }
        return Ok(PeerReport {
            messages: total,
            elapsed_ns: now_ns() - first,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        });
    }
    let mut h = histogram();
    let (mut first, mut last) = (0, 0);
    for i in 0..total {
        let t = floor.stream_recv(i, &mut buf).map_err(|e| e.to_string())?;
        check_ends(&buf, i)?;
        if i >= warmup {
            let now = if t != 0 || i == warmup || i + 1 == total {
                now_ns()
            } else {
                0
            };
            if t != 0 {
                h.saturating_record(now.saturating_sub(t).max(1));
            }
            if i == warmup {
                first = now;
            }
            if i + 1 == total {
                last = now;
            }
        }
    }
    Ok(PeerReport {
        messages: iters.saturating_sub(1),
        elapsed_ns: last.saturating_sub(first),
        latency: summary(&h),
        cpu_ns: cpu_time_ns() - cpu0,
        ..PeerReport::default()
    })
}

/// The copy floor of a round trip: side A copies message `seq` into the
/// A→B slot; side B copies it out, checks its number, copies it into the
/// B→A slot; A copies the echo out and checks it. (The spin floor is one
/// word that both directions share, which no pair of channels can be.)
fn copy_round_trip(
    floor: &Floor,
    initiator: bool,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let mut buf = vec![0x5Au8; floor.size()];
    let recv = |buf: &mut [u8], dir: Dir, seq: u64| -> Result<(), String> {
        floor.trip_recv(dir, seq, buf).map_err(|e| e.to_string())?;
        check_ends(buf, seq)
    };
    if initiator {
        timed_exchanges_from(0, warmup, iters, |seq| {
            number_ends(&mut buf, seq);
            floor.trip_send(Dir::AToB, seq, &buf);
            recv(&mut buf, Dir::BToA, seq)
        })
    } else {
        answer(0, warmup + 2 * iters, |seq| {
            recv(&mut buf, Dir::AToB, seq)?;
            floor.trip_send(Dir::BToA, seq, &buf);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_floor_of_a_round_trip_checks_every_echo() {
        for size in [8, 64, 1000] {
            let floor =
                std::sync::Arc::new(Floor::on_heap(FloorKind::CopyRoundTrip, size).unwrap());
            let f = floor.clone();
            let echo = std::thread::spawn(move || copy_round_trip(&f, false, 10, 100));
            let a = copy_round_trip(&floor, true, 10, 100).unwrap();
            let b = echo.join().unwrap().unwrap();
            assert_eq!((a.messages, b.messages), (100, 210), "{size} B");
            assert!(a.latency.is_some() && a.batched_mean_ns.is_some());
        }
        // An echo that answers with the wrong message fails the initiator.
        let size = 64;
        let floor = std::sync::Arc::new(Floor::on_heap(FloorKind::CopyRoundTrip, size).unwrap());
        let f = floor.clone();
        let rogue = std::thread::spawn(move || {
            let mut buf = vec![0u8; size];
            f.trip_recv(Dir::AToB, 0, &mut buf).unwrap();
            f.trip_send(Dir::BToA, 0, &[7; 64]);
        });
        let e = copy_round_trip(&floor, true, 0, 10).unwrap_err();
        rogue.join().unwrap();
        assert!(e.contains("message 0"), "{e}");
    }

    #[test]
    fn every_floor_runs_between_two_threads() {
        for (kind, size) in [
            (FloorKind::Spin, 8),
            (FloorKind::Park, 8),
            (FloorKind::CopyStream, 64),
            (FloorKind::CopyRoundTrip, 64),
        ] {
            let floor = std::sync::Arc::new(Floor::on_heap(kind, size).unwrap());
            let f = floor.clone();
            let b = std::thread::spawn(move || run(&f, false, 0, (10, 100), 0));
            let a = run(&floor, true, 0, (10, 100), 0).unwrap();
            let b = b.join().unwrap().unwrap();
            let timed = if kind == FloorKind::CopyStream { b } else { a };
            assert!(timed.messages >= 99, "{kind:?}: {}", timed.messages);
        }
    }
}
