//! ZeroMQ's round trip measured as libzmq measures itself (its
//! `perf/local_lat` and `perf/remote_lat`: two processes, default socket
//! options, one I/O thread each, blocking `zmq_send` and `zmq_recv`), with
//! the work the suite's pingpong does on every message added (each side
//! stamps or checks it with the suite's own codec, the echo copies it out
//! first), so that `zmq-ipc`'s and `zmq-tcp`'s pingpong rows can be read
//! against it: the difference is the adapter's (its `PAIR` link, its
//! monitor, `PLAIN` on TCP), not ZeroMQ's.
//!
//! ```text
//! cargo build --release --example zmq_reference
//! R=target/release/examples/zmq_reference
//! taskset -c 1 $R echo ipc:///tmp/zref.sock 64 & sleep 0.3
//! taskset -c 0 $R initiate ipc:///tmp/zref.sock 64 20000; wait
//! ```
//!
//! The echo binds, the initiator connects; `tcp://127.0.0.1:PORT` for
//! TCP. The initiator times round trips with the suite's own loop (a
//! tenth untimed, then each timed, then as many as one batch) and prints
//! the median and 99th percentile, and libzmq's own figure (the batch's
//! mean, halved: one way).
//! Pinned with `taskset` as the suite pins each peer (the whole process,
//! so libzmq's I/O thread shares its CPU, as in the suite).

use ipcbench::harness::child::bodies::timed_exchanges_from;
use ipcbench::harness::validate::Codec;

mod common;
use common::print_round_trips;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: zmq_reference echo|initiate ENDPOINT SIZE [ROUND_TRIPS]";
    let (Some(role), Some(endpoint), Some(size)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("SIZE: a number of bytes");
    let n: u64 = args
        .get(4)
        .map_or(20_000, |s| s.parse().expect("ROUND_TRIPS"));
    let codec = Codec::new(size).expect("SIZE: at least 8 bytes");
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::PAIR).expect("a PAIR socket");
    let mut msg = zmq::Message::new();
    match role.as_str() {
        "echo" => {
            sock.bind(endpoint).expect("binding");
            let mut buf = Vec::with_capacity(size);
            for seq in 0.. {
                sock.recv(&mut msg, 0).expect("zmq_recv");
                if msg.is_empty() {
                    break;
                }
                buf.clear();
                buf.extend_from_slice(&msg);
                codec.check(&buf, seq).expect("an intact message");
                sock.send(&buf[..], 0).expect("zmq_send");
            }
        }
        "initiate" => {
            sock.connect(endpoint).expect("connecting");
            let mut out = codec.buffer();
            // The suite's own timing of a round trip, one by one and batched.
            let r = timed_exchanges_from(0, n / 10, n, |seq| {
                codec.stamp(&mut out, seq, 0);
                sock.send(&out[..], 0).map_err(|e| e.to_string())?;
                sock.recv(&mut msg, 0).map_err(|e| e.to_string())?;
                codec.check(&msg, seq).map(drop)
            })
            .expect("round trips");
            sock.send(&b""[..], 0).expect("zmq_send");
            print_round_trips(&format!("{endpoint} {size} B"), &r);
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
