//! `ipcbench list`: every strategy and pattern, grouped, one name a line,
//! with what it is.

use ipcbench::harness;
use ipcbench::harness::plan::pattern_descriptions;
use ipcbench::transport::TransportKind;

/// The groups `ipcbench list` prints: a heading, then (name, what it is).
fn groups() -> Vec<(String, Vec<(&'static str, String)>)> {
    let own = |v: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        v.iter().map(|(n, d)| (*n, (*d).to_owned())).collect()
    };
    vec![
        (
            "Channels (pingpong, stream; fan-in, fan-out, mpmc and the reqreps where several processes share one)"
                .to_owned(),
            TransportKind::ALL
                .iter()
                .map(|k| (k.name(), k.description().to_owned()))
                .collect(),
        ),
        (
            "Floors (what the hardware allows, measured beside the points)".to_owned(),
            own(&[
                (
                    "floor",
                    "a cache line handed back and forth (spin), a futex (park), a stream's copy",
                ),
                (
                    "floor-copy",
                    "a round trip's copy floor: a slot each way, the message copied in and out",
                ),
            ]),
        ),
        (
            "Primitives".to_owned(),
            harness::sync::Prim::ALL
                .iter()
                .map(|p| (p.name(), p.description().to_owned()))
                .collect(),
        ),
        (
            "Process start-up (startup)".to_owned(),
            harness::startup::Method::ALL
                .iter()
                .map(|m| (m.name(), m.description().to_owned()))
                .collect(),
        ),
        (
            "Python multiprocessing (run by `ipcbench run` when python3 is found; --no-python leaves it out)"
                .to_owned(),
            own(&harness::python::TRANSPORTS),
        ),
        (
            "Patterns (--patterns)".to_owned(),
            own(&pattern_descriptions()),
        ),
    ]
}

/// Prints every strategy and pattern the suite measures, grouped, with a
/// line on each.
pub fn list() {
    let groups = groups();
    let width = groups
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|(n, _)| n.len()))
        .max()
        .unwrap_or(0);
    for (i, (heading, rows)) in groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{heading}");
        for (name, what) in rows {
            println!("  {name:<width$}  {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_run_takes_is_listed_once() {
        let listed: Vec<&str> = groups()
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(n, _)| *n))
            .collect();
        let mut want: Vec<&str> = harness::plan::all_transport_names();
        want.extend(harness::plan::all_pattern_names());
        let mut got = listed.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(
            got, want,
            "ipcbench list names what --transports and --patterns take"
        );
    }
}
