//! The floors' peers: the timing around the protocols of
//! [`crate::shm::floor`] — one word bounced between two processes, a
//! futex ping-pong, and the copy floors of a stream and of a round trip.
//! Each floor has one body, taking its first exchange, so a point and a
//! session's rounds run the same code.

use super::super::control::PeerReport;
use super::super::measure::{StreamTimes, cpu_time_ns, now_ns};
use super::super::validate::Codec;
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

/// The codec of a copy floor's messages: the one every strategy's
/// messages are stamped and checked with.
fn codec_of(floor: &Floor) -> Result<Codec, String> {
    Codec::new(floor.size())
}

/// The copy floor of a stream: the sender stamps each message (one in
/// [`STAMP_EVERY`] with its send time) and copies it into the next of the
/// packed slots; the receiver checks it where it lies with the same check
/// every strategy's receiver makes (sequence, checksum of every byte) and
/// counts it received.
/// So each message is written into shared memory once and read once: the
/// least work the harness asks of any channel, and nothing more.
fn stream(floor: &Floor, sender: bool, warmup: u64, iters: u64) -> Result<PeerReport, String> {
    let total = warmup + iters;
    let codec = codec_of(floor)?;
    let cpu0 = cpu_time_ns();
    if sender {
        let mut buf = codec.buffer();
        let mut head = 0;
        let first = now_ns();
        for i in 0..total {
            let t = if i >= warmup && i % STAMP_EVERY == 0 {
                now_ns()
            } else {
                0
            };
            codec.stamp(&mut buf, i, t);
            floor.stream_send(i, &buf, &mut head);
        }
        return Ok(PeerReport {
            messages: total,
            elapsed_ns: now_ns() - first,
            cpu_ns: cpu_time_ns() - cpu0,
            ..PeerReport::default()
        });
    }
    let mut times = StreamTimes::new(warmup, total);
    let mut tail = 0;
    for i in 0..total {
        // The send time rides in the message (messages of 32 B and more).
        let t = floor
            .stream_recv(i, &mut tail, |m| codec.check(m, i))
            .map_err(|e| e.to_string())??;
        times.received(i, t);
    }
    Ok(PeerReport {
        cpu_ns: cpu_time_ns() - cpu0,
        ..times.report()
    })
}

/// The copy floor of a round trip: side A stamps message `seq` and copies
/// it into the A→B slot; side B copies it straight into the B→A slot and
/// checks it there; A checks the answer where it lies. Each way
/// the message is written into shared memory once and read and checked
/// once, with the check every strategy's peers make. (The spin floor is
/// one word that both directions share, which no pair of channels can be.)
fn copy_round_trip(
    floor: &Floor,
    initiator: bool,
    warmup: u64,
    iters: u64,
) -> Result<PeerReport, String> {
    let codec = codec_of(floor)?;
    let recv = |dir: Dir, seq: u64| -> Result<(), String> {
        floor
            .trip_recv(dir, seq, |m| codec.check(m, seq))
            .map_err(|e| e.to_string())?
            .map(drop)
    };
    if initiator {
        let mut buf = codec.buffer();
        timed_exchanges_from(0, warmup, iters, |seq| {
            codec.stamp(&mut buf, seq, 0);
            floor.trip_send(Dir::AToB, seq, &buf);
            recv(Dir::BToA, seq)
        })
    } else {
        answer(0, warmup + 2 * iters, |seq| {
            floor
                .trip_echo(seq, |m| codec.check(m, seq))
                .map_err(|e| e.to_string())?
                .map(drop)
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
            f.trip_recv(Dir::AToB, 0, |_| ()).unwrap();
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
