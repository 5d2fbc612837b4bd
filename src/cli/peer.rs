//! `ipcbench peer …`: the hidden entry a coordinator starts its peers
//! through. Each role runs one side of a measurement or of a test.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use ipcbench::harness::child::roles::{self as peer, Frames};
use ipcbench::harness::{self, PeerArgs};
use ipcbench::transport::{LinkOpts, Side, TransportKind};

#[derive(Subcommand)]
pub enum Role {
    /// Send checked frames into a ring.
    RingSend {
        region: String,
        frames: u64,
        seed: u64,
        max_len: usize,
    },
    /// Receive and check frames from a ring.
    RingRecv {
        region: String,
        frames: u64,
        seed: u64,
        max_len: usize,
    },
    /// Put numbered items into a queue.
    QueuePut { region: String, id: u64, items: u64 },
    /// Get items from a queue until it is closed, marking each in a raw region.
    QueueGet { region: String, seen: String },
    /// Echo messages on end 1 of a pipe until end 0 closes.
    PipeEcho {
        region: String,
        /// Close after echoing this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Increment a plain counter under a semaphore used as a mutex.
    SemCount {
        sem: String,
        counter: String,
        iters: u64,
    },
    /// Put ITEMS items into a joinable queue.
    JoinablePut { region: String, items: u64 },
    /// Take and release a lock ITERS times, as fast as possible.
    LockChurn { lock: String, iters: u64 },
    /// Pass a barrier ROUNDS times, adding to a counter under a lock
    /// between passes and checking it after each.
    BarrierCycle {
        barrier: String,
        counter: String,
        lock: String,
        rounds: u64,
    },
    /// Take a condition's lock and hold it until killed.
    ConditionHold { cond: String },
    /// Serve a manager (queues, dict, lock, counter) on `unix:PATH` or
    /// `tcp:IP:PORT` until standard input closes; the authkey comes from
    /// IPCBENCH_AUTHKEY (hex).
    ManagerServe {
        listen: String,
        #[arg(long, default_value_t = LinkOpts::default().max_message)]
        max_message: usize,
    },
    /// The Python baseline's BaseManager server at ADDR on a free port,
    /// which it prints (on the second host of a run between two hosts);
    /// the authkey comes from IPCBENCH_PY_AUTHKEY (hex). It serves until
    /// its standard input closes.
    PyBasemanagerServe { addr: String },
    /// Measure one side of a benchmark point (started by the harness).
    Bench(PeerArgs),
    /// One process of a synchronisation-primitive point.
    Sync(harness::sync::SyncArgs),
    /// A task-farm worker: takes tasks until there are none, answers each.
    PoolWorker(harness::pool::WorkerArgs),
    /// A started process's first message: write VALUE (8 bytes,
    /// little-endian) into descriptor FD, then exit.
    Hello { fd: i32, value: u64 },
    /// Join a link of any transport as one side and act on it.
    Link {
        transport: TransportKind,
        addr: String,
        side: Side,
        /// The largest message the link carries.
        #[arg(long, default_value_t = LinkOpts::default().max_message)]
        max_message: usize,
        #[command(subcommand)]
        action: LinkAction,
    },
}

#[derive(Subcommand)]
pub enum LinkAction {
    /// Echo messages until the peer closes (or `--count` were echoed).
    Echo {
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send checked messages, then close.
    Send { n: u64, seed: u64, max_len: usize },
    /// Receive and check messages, then expect the end of the stream.
    Recv { n: u64, seed: u64, max_len: usize },
}

/// Runs `role` in this process: armed to die with its coordinator and to
/// give up after `deadline_s`, each blocking operation bounded by
/// `op_timeout_ms`.
pub fn peer(role: Role, deadline_s: u64, op_timeout_ms: u64) -> Result<()> {
    arm_peer(Duration::from_secs(deadline_s));
    run_role(role, Duration::from_millis(op_timeout_ms))
}

/// A peer dies with its coordinator, and gives up at its deadline.
fn arm_peer(deadline: Duration) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has
    // no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // The parent may have died before the prctl: then we were reparented.
    if std::os::unix::process::parent_id() == 1 {
        std::process::exit(3);
    }
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("error: peer missed its deadline of {}s", deadline.as_secs());
        std::process::exit(4);
    });
}

/// Gives a peer's outcome to its coordinator, every role alike: one
/// report line ([`harness::control::final_report`]); a failed peer exits
/// with status 1 after saying why.
fn report(result: Result<harness::PeerReport, String>) -> Result<()> {
    if !harness::control::final_report(result).map_err(anyhow::Error::msg)? {
        std::process::exit(1);
    }
    Ok(())
}

fn run_role(role: Role, t: Duration) -> Result<()> {
    harness::fault::reached(harness::fault::Phase::Start);
    let pat = |seed, max_len| Frames { seed, max_len };
    let e = |e: peer::PeerError| e.to_string();
    match role {
        Role::RingSend {
            region,
            frames,
            seed,
            max_len,
        } => report(peer::ring_send(&region, frames, pat(seed, max_len)).map_err(e)),
        Role::RingRecv {
            region,
            frames,
            seed,
            max_len,
        } => report(peer::ring_recv(&region, frames, pat(seed, max_len), t).map_err(e)),
        Role::QueuePut { region, id, items } => {
            report(peer::queue_put(&region, id, items, t).map_err(e))
        }
        Role::QueueGet { region, seen } => report(peer::queue_get(&region, &seen, t).map_err(e)),
        Role::PipeEcho { region, count } => report(peer::pipe_echo(&region, count, t).map_err(e)),
        Role::SemCount {
            sem,
            counter,
            iters,
        } => report(peer::sem_count(&sem, &counter, iters, t).map_err(e)),
        Role::JoinablePut { region, items } => {
            report(peer::joinable_put(&region, items, t).map_err(e))
        }
        Role::LockChurn { lock, iters } => report(peer::lock_churn(&lock, iters, t).map_err(e)),
        Role::BarrierCycle {
            barrier,
            counter,
            lock,
            rounds,
        } => report(peer::barrier_cycle(&barrier, &counter, &lock, rounds, t).map_err(e)),
        Role::ConditionHold { cond } => report(peer::condition_hold(&cond, t).map_err(e)),
        Role::Bench(args) => report(harness::child::run_peer(&args)),
        Role::Sync(args) => report(harness::sync::run_peer(&args)),
        Role::PoolWorker(args) => report(harness::pool::run_worker(&args)),
        Role::Hello { fd, value } => harness::startup::hello(fd, value).map_err(anyhow::Error::msg),
        Role::ManagerServe {
            listen,
            max_message,
        } => {
            let key = ipcbench::transport::manager::key_from_env()?;
            // Serves while its starter holds its standard input open: a
            // server on another host ends when the link to it drops.
            std::thread::spawn(|| {
                use std::io::Read;
                let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
                std::process::exit(0);
            });
            // A server asked to die some time into its work starts that
            // clock as it starts serving.
            harness::fault::reached(harness::fault::Phase::Go);
            ipcbench::transport::manager::serve(&listen, &key, max_message)?;
            Ok(())
        }
        Role::PyBasemanagerServe { addr } => {
            let status = harness::python::serve_basemanager(&addr).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(status.success(), "the BaseManager server {status}");
            Ok(())
        }
        Role::Link {
            transport,
            addr,
            side,
            max_message,
            action,
        } => {
            let opts = LinkOpts {
                max_message,
                ..LinkOpts::default()
            };
            report(ipcbench::with_transport!(transport, T => match action {
                LinkAction::Echo { count } => peer::link_echo::<T>(&addr, side, &opts, count, t),
                LinkAction::Send { n, seed, max_len } => {
                    peer::link_send::<T>(&addr, side, &opts, n, pat(seed, max_len), t)
                }
                LinkAction::Recv { n, seed, max_len } => {
                    peer::link_recv::<T>(&addr, side, &opts, n, pat(seed, max_len), t)
                }
            }.map_err(e)))
        }
    }
}
