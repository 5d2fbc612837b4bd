//! iceoryx2's round trip measured as iceoryx2's own publish-subscribe
//! benchmark measures it (`benchmarks/publish-subscribe` in its
//! repository: two pinned participants, each publishing on one service
//! and subscribing to the other; loan, write, send; busy-poll `receive`),
//! with the work the suite's pingpong does on every message added (each
//! side stamps or checks it with the suite's own codec, the echo copies
//! it out first). No credit counter, no liveness region: what the
//! `iceoryx2` transport adds for a lossless, watched link is left out, so
//! the `iceoryx2` pingpong rows can be read against this.
//!
//! ```text
//! cargo build --release --example iceoryx2_reference
//! R=target/release/examples/iceoryx2_reference
//! taskset -c 1 $R echo 64 & taskset -c 0 $R initiate 64 100000; wait
//! ```
//!
//! The initiator times round trips with the suite's own loop (a tenth
//! untimed, then each timed, then as many as one batch) and prints the
//! median and 99th percentile, and the benchmark's own figure (the
//! batch's mean, halved: one way). Its services live where the suite's iceoryx2 files do (its file
//! prefix and root directory), named for the two processes' parent; the
//! echo, which leaves last, removes what iceoryx2 keeps once no node runs.

use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use ipcbench::harness::child::bodies::timed_exchanges_from;
use ipcbench::harness::validate::Codec;
use ipcbench::transport::iceoryx2 as iox;

mod common;
use common::print_round_trips;

type Svc = ipc::Service;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: iceoryx2_reference echo|initiate SIZE [ROUND_TRIPS]";
    let (Some(role), Some(size)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let initiator = match role.as_str() {
        "initiate" => true,
        "echo" => false,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let size: usize = size.parse()?;
    let n: u64 = args.get(3).map_or(Ok(100_000), |s| s.parse())?;
    let codec = Codec::new(size)?;
    // Both processes are started by one shell: its pid names the pair.
    let pair = std::os::unix::process::parent_id();
    let mut config = Config::default();
    config.global.prefix = FileName::new(iox::FILE_PREFIX.as_bytes())?;
    config
        .global
        .set_root_path(&Path::new(iox::ROOT_DIR.as_bytes())?);
    let node = NodeBuilder::new()
        .config(&config)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()?;
    let service = |dir: &str| {
        let name: ServiceName = format!("ipcbench-reference/{pair}/{dir}")
            .as_str()
            .try_into()?;
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .map_err(|e| format!("{e:?}").into())
    };
    let ab: Result<_, Box<dyn std::error::Error>> = service("ab");
    let ba: Result<_, Box<dyn std::error::Error>> = service("ba");
    let (out, inp) = if initiator { (ab?, ba?) } else { (ba?, ab?) };
    let publisher = out
        .publisher_builder()
        .initial_max_slice_len(size)
        .create()?;
    let subscriber = inp.subscriber_builder().create()?;
    // Nothing sent before the peer subscribes reaches it.
    let t0 = Instant::now();
    while out.dynamic_config().number_of_subscribers() == 0 {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("the other participant did not subscribe within 10 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let send = |payload: &[u8]| -> Result<(), Box<dyn std::error::Error>> {
        let sample = publisher.loan_slice_uninit(payload.len())?;
        sample.write_from_slice(payload).send()?;
        Ok(())
    };
    if initiator {
        let mut out = codec.buffer();
        // The suite's own timing of a round trip, one by one and batched.
        let r = timed_exchanges_from(0, n / 10, n, |seq| {
            codec.stamp(&mut out, seq, 0);
            send(&out).map_err(|e| e.to_string())?;
            let sample = loop {
                if let Some(s) = subscriber.receive().map_err(|e| format!("{e:?}"))? {
                    break s;
                }
            };
            codec.check(sample.payload(), seq).map(drop)
        })?;
        print_round_trips(&format!("iceoryx2 {size} B"), &r);
    } else {
        let mut buf = Vec::with_capacity(size);
        // The initiator's untimed tenth, then its two timed runs.
        for seq in 0..n / 10 + 2 * n {
            let sample = loop {
                if let Some(s) = subscriber.receive()? {
                    break s;
                }
            };
            buf.clear();
            buf.extend_from_slice(sample.payload());
            drop(sample);
            codec.check(&buf, seq)?;
            send(&buf)?;
        }
        // The last echo lives in this process: stay until it was taken.
        std::thread::sleep(Duration::from_millis(200));
    }
    if !initiator {
        drop((publisher, subscriber, out, inp, node));
        iox::cleanup(false)?;
    }
    Ok(())
}
