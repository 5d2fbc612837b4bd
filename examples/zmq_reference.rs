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
//! TCP. The initiator prints the round trip's median and 99th percentile,
//! and libzmq's own figure (the mean one way: elapsed / round trips / 2).
//! Pinned with `taskset` as the suite pins each peer (the whole process,
//! so libzmq's I/O thread shares its CPU, as in the suite).

use std::time::Instant;

use ipcbench::harness::validate::Codec;

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
            let mut times = Vec::with_capacity(n as usize);
            let t0 = Instant::now();
            for seq in 0..n {
                let t = Instant::now();
                codec.stamp(&mut out, seq, 0);
                sock.send(&out[..], 0).expect("zmq_send");
                sock.recv(&mut msg, 0).expect("zmq_recv");
                codec.check(&msg, seq).expect("an intact echo");
                times.push(t.elapsed().as_nanos() as u64);
            }
            let total = t0.elapsed();
            sock.send(&b""[..], 0).expect("zmq_send");
            times.sort_unstable();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1e3;
            println!(
                "{endpoint} {size} B: round trip p50 {:.2} µs p99 {:.2} µs; one way (libzmq's figure) {:.2} µs",
                at(0.5),
                at(0.99),
                total.as_secs_f64() * 1e6 / n as f64 / 2.0
            );
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
