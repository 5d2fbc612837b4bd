//! How long a point should take: what `run --dry-run` adds up and the
//! progress bar's ETA runs on.
//!
//! A point's time is its set-up (processes started, links made, a first
//! attempt to learn the message rate), its measurement for the profile's
//! time budget — more than once where the floors are measured beside it,
//! or an attempt was too short — and its checks. Each kind of point is
//! modelled as `fixed + per_budget × budget`, both fitted to the time each
//! point took in a default run (0.5 s budgets) and a quick one (0.1 s) on
//! the 2-core VM the suite is developed on, from the seconds between the
//! lines the run printed for consecutive points. A machine slower to start
//! processes, or a strategy slower than its kind, takes longer: the ETA
//! corrects for the first by the pace the run keeps.

use super::Profile;
use crate::harness::python::PlannedPoint;
use crate::harness::spec::{Measurement, Pattern, RunOpts, Strategy};

/// `(fixed, per_budget)`: seconds, and seconds per second of budget.
type Cost = (f64, f64);

/// The cost of one kind of point.
fn cost(m: &Measurement) -> Cost {
    match m {
        Measurement::Channel(s) => {
            let floor = matches!(s.strategy, Strategy::Floor | Strategy::FloorCopy);
            let big = s.size >= 1 << 20;
            match s.pattern {
                _ if floor => FLOOR,
                Pattern::Pingpong if big => PINGPONG_1M,
                Pattern::Pingpong => PINGPONG,
                Pattern::Stream if big => STREAM_1M,
                Pattern::Stream => STREAM,
                Pattern::PingpongLate => LATE,
                _ => SHARED,
            }
        }
        Measurement::Rate(_) => RATE,
        Measurement::Primitive(_) => PRIMITIVE,
        Measurement::Farm(_) => FARM,
        Measurement::Startup(_) => STARTUP,
        Measurement::Hosts(m) => cost(m),
    }
}

const FLOOR: Cost = (0.34, 4.74);
const PINGPONG: Cost = (0.05, 2.97);
const PINGPONG_1M: Cost = (0.7, 5.7);
const STREAM: Cost = (0.14, 3.42);
const STREAM_1M: Cost = (1.2, 9.4);
const LATE: Cost = (0.44, 0.85);
const SHARED: Cost = (0.0, 1.94);
const RATE: Cost = (0.04, 1.09);
const PRIMITIVE: Cost = (0.0, 0.36);
const FARM: Cost = (0.013, 0.335);
const STARTUP: Cost = (0.0, 1.97);

/// Python's points, by pattern.
fn python_cost(pattern: &str) -> Cost {
    match pattern {
        "pingpong" | "stream" => PY_ONE_TO_ONE,
        "rate" | "reqrep-rate" => PY_RATE,
        "startup" => PY_STARTUP,
        "pool" | "pool-cpu" => PY_POOL,
        "mpmc" | "reqrep" | "reqrep-list" | "reqrep-namespace" | "reqrep-value" => PY_SHARED,
        _ => PY_PRIMITIVE,
    }
}

const PY_ONE_TO_ONE: Cost = (0.07, 2.66);
const PY_RATE: Cost = (0.03, 1.34);
const PY_STARTUP: Cost = (0.4, 0.91);
const PY_POOL: Cost = (0.33, 0.73);
const PY_SHARED: Cost = (0.08, 1.85);
const PY_PRIMITIVE: Cost = (0.035, 1.52);

fn of((fixed, per_budget): Cost, budget_s: f64) -> f64 {
    fixed + per_budget * budget_s
}

/// The seconds measurement `m` should take under `opts`, measured
/// `repeats` times (floors at least three, as the scheduler does).
pub fn seconds(m: &Measurement, opts: &RunOpts, repeats: usize) -> f64 {
    let n = if m.is_floor() {
        repeats.max(3)
    } else {
        repeats.max(1)
    };
    // The floors' three repeats are in their fitted cost.
    let n = if m.is_floor() {
        n as f64 / 3.0
    } else {
        n as f64
    };
    of(cost(m), opts.budget.as_secs_f64()) * n
}

/// The seconds a point of the Python baseline should take in `profile`
/// (its points measure on the same budgets).
pub fn python_seconds(p: &PlannedPoint, profile: Profile) -> f64 {
    of(python_cost(&p.pattern), profile.budget().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::plan::{Filters, plan};

    fn total(profile: Profile, repeats: usize) -> f64 {
        let p = plan(profile, &Filters::default(), false).unwrap();
        let opts = profile.opts(std::path::PathBuf::new());
        p.measurements
            .iter()
            .map(|m| seconds(m, &opts, repeats))
            .sum()
    }

    /// Longer budgets and more points take longer; repeats multiply every
    /// point but the floors, which are measured three times anyway; every
    /// kind of point costs something.
    #[test]
    fn estimates_grow_with_budgets_points_and_repeats() {
        let (q, d, f) = (
            total(Profile::Quick, 1),
            total(Profile::Default, 1),
            total(Profile::Full, 1),
        );
        assert!(0.0 < q && q < d && d < f, "{q} {d} {f}");
        let p = plan(Profile::Quick, &Filters::default(), false).unwrap();
        let opts = Profile::Quick.opts(std::path::PathBuf::new());
        for m in &p.measurements {
            let one = seconds(m, &opts, 1);
            assert!(one > 0.0, "{m:?}");
            let three = seconds(m, &opts, 3);
            let want = if m.is_floor() { one } else { 3.0 * one };
            assert!((three - want).abs() < 1e-9, "{m:?}: {one} {three}");
        }
    }
}
