//! Each family's measurements under a profile and the filters.

use super::{Filters, Profile};
use crate::harness::pool::{self, PoolSpec};
use crate::harness::rate::{Load, RateSpec};
use crate::harness::spec::{Pattern, PointSpec, Strategy, VALUE_SIZE};
use crate::harness::startup::{self, Method};
use crate::harness::sync::{Prim, SyncSpec};
use crate::harness::validate::STAMPED_SIZE;
use crate::shm::{Wait, WaitKind};
use crate::transport::{Shared, TransportKind};

/// The primitives: locks by 1, 2 and 4 processes (1 and 2 in the quick
/// profile, up to 8 in the full one), barriers by 2, 4 and 8 (2 in the
/// quick profile), the
/// event ping-pong, the condition handoff and the joinable queue by 2; waiting with spin-park and park (spin-park only in
/// the quick profile); the lock-free atomic once per count.
pub(super) fn prims(profile: Profile, f: &Filters) -> Vec<SyncSpec> {
    let counts: &[usize] = match profile {
        Profile::Quick => &[1, 2],
        Profile::Default => &[1, 2, 4],
        Profile::Full => &[1, 2, 4, 8],
    };
    let waits: &[Wait] = if profile == Profile::Quick {
        &[Wait::SPIN_PARK]
    } else {
        &[Wait::SPIN_PARK, Wait::PARK]
    };
    let waits = f.waits_or(waits.to_vec());
    let mut out = Vec::new();
    for prim in Prim::ALL {
        if !(f.prims.is_empty() || f.prims.contains(&prim))
            || !f.pattern(prim.pattern())
            || !f.size(prim.size())
        {
            continue;
        }
        let procs: &[usize] = match prim {
            Prim::Event | Prim::Joinable | Prim::Condition => &[2],
            // A barrier of one is no barrier; 2, 4 and 8 as the Python
            // baseline's (the quick profile: 2).
            Prim::Barrier if profile == Profile::Quick => &[2],
            Prim::Barrier => &[2, 4, 8],
            _ => counts,
        };
        // Lock-free: nothing waits, one point per count.
        let ws: &[Wait] = if prim == Prim::Atomic {
            &[Wait::SPIN_PARK]
        } else {
            &waits
        };
        for &wait in ws {
            for &procs in procs {
                if f.procs((procs, 1)) {
                    out.push(SyncSpec {
                        prim,
                        procs,
                        wait,
                        permits: 1,
                    });
                }
            }
        }
    }
    out
}

/// The task farms: every strategy whose row runs one, 1 to 8 workers (1
/// and 2 in the quick profile); shared memory waits spinning first or
/// parking at once (the master and the workers share the CPUs), the
/// kernel blocks.
pub(super) fn farms(profile: Profile, f: &Filters) -> Vec<PoolSpec> {
    let ws: &[usize] = if profile == Profile::Quick {
        &pool::WORKERS[..2]
    } else {
        &pool::WORKERS
    };
    if !f.size(pool::TASK_SIZE) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for cpu_work in [false, true] {
        if !f.pattern(pool::PATTERNS[usize::from(cpu_work)]) {
            continue;
        }
        for kind in pool::kinds() {
            if !(f.strategies.is_empty() || f.strategies.contains(&Strategy::Transport(kind))) {
                continue;
            }
            let waits: Vec<Wait> = if Strategy::Transport(kind).has_wait() {
                f.waits_or(vec![Wait::SPIN_PARK, Wait::PARK])
            } else {
                vec![Wait::PARK]
            };
            for &wait in &waits {
                for &workers in ws {
                    if f.procs((1, workers)) {
                        out.push(PoolSpec {
                            kind,
                            cpu_work,
                            workers,
                            wait,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The open-loop points: every transport at the profile's sizes (those
/// that carry a send time) and waits, one-to-one (`rate`), and the
/// strategies that serve a dictionary with clients calling it
/// (`reqrep-rate`); for each, the unpaced point first (the capacity its
/// fractions refer to), then the loads `--rates` asks for or the
/// profile's ladder.
pub(super) fn rates(profile: Profile, f: &Filters) -> Vec<RateSpec> {
    if !f.pattern(Pattern::Rate.name()) && !f.pattern(Pattern::ReqrepRate.name()) {
        return Vec::new();
    }
    let strategies: Vec<Strategy> = if f.strategies.is_empty() {
        TransportKind::ALL
            .iter()
            .map(|k| Strategy::Transport(*k))
            .collect()
    } else {
        f.strategies
            .iter()
            .copied()
            .filter(|s| matches!(s, Strategy::Transport(_)))
            .collect()
    };
    let sizes = f.sizes_or(profile.rate_sizes());
    let waits = f.waits_or(profile.waits());
    let loads: Vec<Load> = std::iter::once(Load::Unpaced)
        .chain(
            if f.rates.is_empty() {
                profile.loads()
            } else {
                f.rates.clone()
            }
            .into_iter()
            .filter(|l| *l != Load::Unpaced),
        )
        .collect();
    // Clients of reqrep-rate: `--procs` N×1, else the profile's.
    let clients: Vec<usize> = if f.procs.is_empty() {
        vec![profile.rate_clients()]
    } else {
        f.procs.iter().filter(|p| p.1 == 1).map(|p| p.0).collect()
    };
    let mut out = Vec::new();
    for s in strategies {
        let ws = if s.has_wait() {
            s.waits_of(&waits)
        } else {
            vec![Wait::SPIN_PARK]
        };
        let mut shapes: Vec<(Pattern, usize)> = Vec::new();
        if f.pattern(Pattern::Rate.name()) && f.procs((1, 1)) {
            shapes.push((Pattern::Rate, 1));
        }
        if f.pattern(Pattern::ReqrepRate.name()) && s.caps().serves_calls() {
            shapes.extend(clients.iter().map(|&n| (Pattern::ReqrepRate, n)));
        }
        for &size in sizes.iter().filter(|&&n| n >= STAMPED_SIZE) {
            for &(pattern, producers) in &shapes {
                for &wait in &ws {
                    for &load in &loads {
                        out.push(RateSpec {
                            point: PointSpec {
                                producers,
                                ..PointSpec::one_to_one(s, pattern, size, wait)
                            },
                            load,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Start-up: every way of starting a process, at 1×1; it has no wait.
pub(super) fn starts(f: &Filters) -> Vec<Method> {
    if !f.pattern(startup::PATTERN) || !f.size(startup::SIZE) || !f.procs((1, 1)) {
        return Vec::new();
    }
    Method::ALL
        .into_iter()
        .filter(|m| f.starts.is_empty() || f.starts.contains(m))
        .collect()
}

/// The one size `pingpong-late` is measured at: 64 B when asked for, else
/// the smallest.
fn late_size(sizes: &[usize]) -> usize {
    if sizes.contains(&64) {
        64
    } else {
        sizes.iter().copied().min().unwrap_or(64)
    }
}

/// The channel points of a run, floors first.
pub fn channels(profile: Profile, f: &Filters) -> Vec<PointSpec> {
    let mut strategies: Vec<Strategy> = if f.strategies.is_empty() {
        [Strategy::Floor, Strategy::FloorCopy]
            .into_iter()
            .chain(TransportKind::ALL.iter().map(|k| Strategy::Transport(*k)))
            .collect()
    } else {
        f.strategies.clone()
    };
    // `floor` asks for every floor.
    if let Some(i) = strategies.iter().position(|s| *s == Strategy::Floor)
        && !strategies.contains(&Strategy::FloorCopy)
    {
        strategies.insert(i + 1, Strategy::FloorCopy);
    }
    let patterns: Vec<Pattern> = Pattern::ALL
        .into_iter()
        .filter(|p| !p.open_loop() && f.pattern(p.name()))
        .collect();
    let sizes = f.sizes_or(profile.sizes());
    let waits = f.waits_or(profile.waits());
    let mut points = Vec::new();
    if patterns.is_empty() {
        // Only other families' patterns were named.
        return points;
    }
    let one_to_one = f.procs((1, 1));
    let allows = |kind: WaitKind| f.waits.is_empty() || waits.iter().any(|x| x.kind == kind);
    // A floor of `pattern`, spinning, at every size.
    let at_every_size = |points: &mut Vec<PointSpec>, strategy, pattern| {
        for size in &sizes {
            points.push(PointSpec::one_to_one(strategy, pattern, *size, Wait::SPIN));
        }
    };
    for s in &strategies {
        if matches!(s, Strategy::Floor | Strategy::FloorCopy) && !one_to_one {
            continue;
        }
        if *s == Strategy::FloorCopy {
            // The copy floor of a round trip.
            if patterns.contains(&Pattern::Pingpong) && allows(WaitKind::Spin) {
                at_every_size(&mut points, Strategy::FloorCopy, Pattern::Pingpong);
            }
            continue;
        }
        if *s == Strategy::Floor {
            // The floor moves one word: one point per kind of waiting.
            for w in [Wait::SPIN, Wait::PARK] {
                if allows(w.kind) {
                    points.push(PointSpec::one_to_one(
                        Strategy::Floor,
                        Pattern::Pingpong,
                        8,
                        w,
                    ));
                }
            }
            // The late answer's yardstick: a futex ping-pong whose echo
            // works as long before answering.
            if patterns.contains(&Pattern::PingpongLate) && allows(WaitKind::Park) {
                points.push(PointSpec::one_to_one(
                    Strategy::Floor,
                    Pattern::PingpongLate,
                    late_size(&sizes),
                    Wait::PARK,
                ));
            }
            // The copy floor of a stream.
            if patterns.contains(&Pattern::Stream) && allows(WaitKind::Spin) {
                at_every_size(&mut points, Strategy::Floor, Pattern::Stream);
            }
            continue;
        }
        for p in &patterns {
            if p.is_multi() && !s.multi_party() {
                continue;
            }
            // A dictionary to call: shared memory's or a server's.
            if p.calls() && !s.caps().serves_calls() {
                continue;
            }
            // A late answer asks how each waiting strategy of the
            // shared-memory core waits; one size says it.
            if *p == Pattern::PingpongLate && !s.caps().late_answer {
                continue;
            }
            // A list, a Namespace, a Value: a manager's objects.
            if p.manager_object() && s.caps().shared != Shared::Server {
                continue;
            }
            let counts = if !f.procs.is_empty() && p.is_multi() {
                f.procs
                    .iter()
                    .copied()
                    .filter(|&(n, m)| {
                        n >= 1
                            && m >= 1
                            && match p {
                                Pattern::FanIn => m == 1,
                                Pattern::FanOut => n == 1,
                                p if p.calls() => m == 1,
                                _ => true,
                            }
                    })
                    .collect()
            } else if p.is_multi() {
                profile.counts(*p)
            } else if one_to_one {
                vec![(1, 1)]
            } else {
                Vec::new()
            };
            // A Value holds 8 bytes whatever the sizes (unless they leave 8 out).
            let value = [VALUE_SIZE];
            let sizes_of_p: &[usize] = match *p {
                Pattern::ReqrepValue if f.sizes.is_empty() || f.sizes.contains(&VALUE_SIZE) => {
                    &value
                }
                Pattern::ReqrepValue => &[],
                _ => &sizes,
            };
            for size in sizes_of_p {
                if p.is_multi()
                    && *p != Pattern::ReqrepValue
                    && f.sizes.is_empty()
                    && !profile.multi_sizes().contains(size)
                {
                    continue;
                }
                if *p == Pattern::PingpongLate && *size != late_size(&sizes) {
                    continue;
                }
                let ws: Vec<Wait> = if s.has_wait() {
                    s.waits_of(&waits)
                } else {
                    vec![Wait::SPIN_PARK]
                };
                for w in ws {
                    for &(producers, consumers) in &counts {
                        points.push(PointSpec {
                            strategy: *s,
                            pattern: *p,
                            size: *size,
                            wait: w,
                            producers,
                            consumers,
                        });
                    }
                }
            }
        }
    }
    points
}
