//! Costs of the shared-memory core's operations, in one process: the price
//! of each structure's bookkeeping with no hand-off (one thread), and a
//! cache-line hand-off between two threads (ring ping-pong, spinning).
//!
//! These are the building blocks' own costs; round trips between separate
//! processes are measured by the harness.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ipcbench::shm::{Lock, Queue, Ring, Semaphore, Wait};

const SIZES: [usize; 3] = [8, 64, 1024];

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("shm_core/one_thread");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![7u8; size];
        let ring = Ring::on_heap(1 << 16, Wait::SPIN).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        g.bench_with_input(
            BenchmarkId::new("ring send+recv (zero-copy)", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let mut w = tx.try_claim(msg.len()).unwrap();
                    w.copy_from_slice(&msg);
                    w.commit();
                    let r = rx.try_read().unwrap();
                    black_box(r[0]);
                })
            },
        );
        let q = Queue::on_heap(1024, size, Wait::SPIN).unwrap();
        let mut buf = Vec::with_capacity(size);
        g.bench_with_input(BenchmarkId::new("queue put+get", size), &size, |b, _| {
            b.iter(|| {
                q.put_nowait(&msg).unwrap();
                black_box(q.get_nowait(&mut buf).unwrap());
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let sem = Semaphore::on_heap(0, u32::MAX, Wait::SPIN_PARK);
    g.bench_function("semaphore release+acquire", |b| {
        b.iter(|| {
            sem.release().unwrap();
            sem.acquire(None).unwrap();
        })
    });
    let lock = Lock::on_heap(Wait::SPIN_PARK);
    g.bench_function("lock acquire+release", |b| {
        b.iter(|| drop(lock.lock(None).unwrap()))
    });
    g.finish();
}

/// A 64-byte ping-pong between two threads over two rings, spinning: one
/// round trip is two cache-line hand-offs each way.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("shm_core/two_threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("ring pingpong RTT", 64), |b| {
        b.iter_custom(|iters| {
            let ping = Ring::on_heap(4096, Wait::SPIN).unwrap();
            let pong = Ring::on_heap(4096, Wait::SPIN).unwrap();
            let (mut ping_tx, mut ping_rx) = (ping.producer().unwrap(), ping.consumer().unwrap());
            let (mut pong_tx, mut pong_rx) = (pong.producer().unwrap(), pong.consumer().unwrap());
            let echo = std::thread::spawn(move || {
                let mut buf = Vec::with_capacity(64);
                while ping_rx
                    .recv(&mut buf, Some(Duration::from_secs(10)))
                    .is_ok()
                {
                    pong_tx.send(&buf, None).unwrap();
                }
            });
            let msg = [1u8; 64];
            let mut buf = Vec::with_capacity(64);
            // One exchange outside timing: the echo thread is running.
            ping_tx.send(&msg, None).unwrap();
            pong_rx.recv(&mut buf, None).unwrap();
            let t0 = Instant::now();
            for _ in 0..iters {
                ping_tx.send(&msg, None).unwrap();
                pong_rx.recv(&mut buf, None).unwrap();
            }
            let elapsed = t0.elapsed();
            drop(ping_tx);
            echo.join().unwrap();
            elapsed
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        // As `benches/ipc.rs`: 10,000 bootstrap resamples keep the
        // intervals within 1% of their width and draw criterion's report
        // several times faster than 100,000.
        .nresamples(10_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = single_thread, two_threads
}
criterion_main!(benches);
