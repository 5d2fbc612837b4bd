//! The floors measured beside each one-to-one point: the same-work floor
//! at the point's size, on the point's CPUs, just before and just after
//! it; and the point measured again when those floors do not stand beside
//! it (the machine's speed moved under it).

use crate::record::{BELOW_FLOOR, PointRecord, Status, floor_multiple};
use crate::shm::Wait;
use crate::transport::Side;

use super::control::PeerArgs;
use super::point::{fill_pair, run_floor, within_budget};
use super::run::interrupted;
use super::spec::{Pattern, PointSpec, RunOpts, Strategy};

/// How many times a one-to-one point is measured, at most, to get floors
/// that stand beside it.
pub const TRIES: u32 = 3;

/// Measures a one-to-one point with `measure` (which measures the floors
/// beside it too) until its floors stand beside it ([`stands`]), at most
/// [`TRIES`] times; the record says how many it took (`tries`). On a
/// virtual machine whose CPUs drift, one floor in five read more than a
/// quarter away from its twin a point later; and once both floors read a
/// three-hundredth of their usual speed for a whole second while the point
/// between them did not.
pub(super) fn tried(mut measure: impl FnMut() -> PointRecord) -> PointRecord {
    let mut rec = measure();
    let mut tries = 1;
    while tries < TRIES && !stands(&rec) && !interrupted() {
        rec = measure();
        tries += 1;
    }
    if tries > 1 {
        rec.tries = Some(tries);
    }
    rec
}

/// Whether a point's floors stand beside it: they agree within
/// [`crate::record::STEADY_FLOORS`] and the point does not read below
/// [`BELOW_FLOOR`] times them. A point that failed, or has no floors beside
/// it, has nothing to measure again for.
pub fn stands(rec: &PointRecord) -> bool {
    rec.status != Status::Ok
        || rec.adjacent_floors.is_empty()
        || floor_multiple(rec).is_some_and(|m| m >= BELOW_FLOOR)
}

/// The key figure of the same-work floor that matches a one-to-one
/// pingpong or stream point at its size (the round trip's copy floor's
/// median; the stream's copy floor's messages per second), measured
/// briefly on the point's CPUs. `None` for other points, floors, unpinned
/// points, or when the floor could not be measured (the point stands
/// without it).
pub(super) fn beside(spec: &PointSpec, opts: &RunOpts, cpus: &[usize]) -> Option<f64> {
    if matches!(spec.strategy, Strategy::Floor | Strategy::FloorCopy) {
        return None;
    }
    if cpus.len() != 2 || opts.fixed_count.is_some() {
        return None;
    }
    let floor = match spec.pattern {
        Pattern::Pingpong => PointSpec::one_to_one(
            Strategy::FloorCopy,
            Pattern::Pingpong,
            spec.size,
            Wait::SPIN,
        ),
        Pattern::Stream => {
            PointSpec::one_to_one(Strategy::Floor, Pattern::Stream, spec.size, Wait::SPIN)
        }
        _ => return None,
    };
    // A quarter of the point's time budget: long enough for a median and
    // for the floor to reach its speed (over a few milliseconds a stream
    // floor read a fifth of what it reads over a tenth of a second), short
    // enough to sit right beside the point.
    let quarter = RunOpts {
        budget: opts.budget / 4,
        ..opts.clone()
    };
    let (warmup, iters) = quarter.first_count(&floor);
    let (a, b) = within_budget(&floor, &quarter, (warmup, iters), |w, n| {
        run_floor(&floor, opts, |addr, side| {
            let cpu = cpus[if side == Side::A { 0 } else { 1 }];
            PeerArgs::for_point(&floor, addr, side, 0, (w, n), Some(cpu))
        })
    })
    .ok()?;
    let mut rec = PointRecord::unmeasured(
        floor.strategy.name(),
        floor.pattern.name(),
        floor.size,
        (1, 1),
        "spin",
    );
    fill_pair(&mut rec, &floor, &a, &b);
    rec.key_figure()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(msgs_per_s: f64, floors: &[f64]) -> PointRecord {
        let mut r = PointRecord::unmeasured("shm-ring", "stream", 64, (1, 1), "spin");
        r.pass();
        r.throughput = Some(crate::record::Throughput {
            msgs_per_s,
            bytes_per_s: msgs_per_s * 64.0,
        });
        r.adjacent_floors = floors.to_vec();
        r
    }

    #[test]
    fn floors_stand_beside_a_point_only_when_steady_and_not_below_it() {
        // At the floors' speed, or slower: stands.
        assert!(stands(&stream(10e6, &[10e6, 11e6])));
        assert!(stands(&stream(5e6, &[10e6, 11e6])));
        // Starved floors the point outran: measure again.
        assert!(!stands(&stream(480e3, &[62e3, 60e3])));
        // Floors a third apart: measure again.
        assert!(!stands(&stream(5e6, &[10e6, 15e6])));
        // No floors, or a failed point: nothing to measure again for.
        assert!(stands(&stream(5e6, &[])));
        let mut failed = stream(5e6, &[10e6, 15e6]);
        failed.fail("peer B: lost");
        assert!(stands(&failed));
    }

    #[test]
    fn a_point_is_measured_again_until_its_floors_stand_at_most_three_times() {
        let mut figures = vec![(1e6, [62e3, 60e3]), (5e6, [10e6, 10e6])].into_iter();
        let r = tried(|| {
            let (f, fl) = figures.next().unwrap();
            stream(f, &fl)
        });
        assert_eq!((r.tries, r.throughput.unwrap().msgs_per_s), (Some(2), 5e6));
        let mut n = 0;
        let r = tried(|| {
            n += 1;
            stream(1e6, &[62e3, 60e3])
        });
        assert_eq!((n, r.tries), (TRIES, Some(TRIES)));
        let r = tried(|| stream(5e6, &[10e6, 10e6]));
        assert_eq!(r.tries, None);
    }
}
