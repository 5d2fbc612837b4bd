//! The `ipcbench` command line.

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(loom))]
mod cli {
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{Context, Result};
    use clap::{Parser, Subcommand};
    use ipcbench::harness::{self, PeerArgs, Strategy};
    use ipcbench::peer::{self, Pattern};
    use ipcbench::shm::Wait;
    use ipcbench::shm::region;
    use ipcbench::transport::{LinkOpts, Side, TransportKind};

    /// Which IPC strategy should I use, and how far is it from what the hardware allows?
    #[derive(Parser)]
    #[command(version, about)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// List the IPC strategies, one name a line, with what each is.
        List,
        /// List leftover shared-memory files of ipcbench in /dev/shm and
        /// remove those whose creating process is gone.
        Clean {
            /// Only list what would be removed.
            #[arg(long)]
            dry_run: bool,
        },
        /// Run one side of a measurement (started by a coordinator, not by hand).
        #[command(hide = true)]
        Peer {
            /// Exit with an error if the role has not finished after this many seconds.
            #[arg(long, default_value_t = 120)]
            deadline_s: u64,
            /// How long one blocking operation may wait, in milliseconds.
            #[arg(long, default_value_t = 10_000)]
            op_timeout_ms: u64,
            #[command(subcommand)]
            role: Role,
        },
    }

    #[derive(Subcommand)]
    enum Role {
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
        /// Serve a manager (queues, dict, lock, counter) on `unix:PATH` or
        /// `tcp:IP:PORT`; the authkey comes from IPCBENCH_AUTHKEY (hex).
        ManagerServe {
            listen: String,
            #[arg(long, default_value_t = LinkOpts::default().max_message)]
            max_message: usize,
        },
        /// Measure one side of a benchmark point (started by the harness).
        Bench {
            strategy: Strategy,
            addr: String,
            side: Side,
            pattern: harness::Pattern,
            size: usize,
            warmup: u64,
            iters: u64,
            #[arg(long, default_value = "spin-park")]
            wait: Wait,
            #[arg(long)]
            cpu: Option<usize>,
            #[arg(long, default_value_t = LinkOpts::default().max_message)]
            max_message: usize,
        },
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
    enum LinkAction {
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

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn run(cli: Cli) -> Result<()> {
        match cli.cmd {
            Cmd::Clean { dry_run } => clean(dry_run),
            Cmd::List => {
                for k in TransportKind::ALL {
                    println!("{:<16} {}", k.name(), k.description());
                }
                Ok(())
            }
            Cmd::Peer {
                deadline_s,
                op_timeout_ms,
                role,
            } => {
                arm_peer(Duration::from_secs(deadline_s));
                let line = run_role(role, Duration::from_millis(op_timeout_ms))?;
                if !line.is_empty() {
                    println!("{line}");
                }
                Ok(())
            }
        }
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

    fn run_role(role: Role, t: Duration) -> Result<String> {
        let pat = |seed, max_len| Pattern { seed, max_len };
        Ok(match role {
            Role::RingSend {
                region,
                frames,
                seed,
                max_len,
            } => peer::ring_send(&region, frames, pat(seed, max_len))?,
            Role::RingRecv {
                region,
                frames,
                seed,
                max_len,
            } => peer::ring_recv(&region, frames, pat(seed, max_len), t)?,
            Role::QueuePut { region, id, items } => peer::queue_put(&region, id, items, t)?,
            Role::QueueGet { region, seen } => peer::queue_get(&region, &seen, t)?,
            Role::PipeEcho { region, count } => peer::pipe_echo(&region, count, t)?,
            Role::SemCount {
                sem,
                counter,
                iters,
            } => peer::sem_count(&sem, &counter, iters, t)?,
            Role::Bench {
                strategy,
                addr,
                side,
                pattern,
                size,
                warmup,
                iters,
                wait,
                cpu,
                max_message,
            } => {
                let args = PeerArgs {
                    strategy,
                    addr,
                    side,
                    pattern,
                    size,
                    warmup,
                    iters,
                    wait,
                    cpu,
                    max_message,
                };
                let report =
                    harness::run_peer(&args).unwrap_or_else(|e| harness::peer::PeerReport {
                        error: Some(e),
                        ..Default::default()
                    });
                let failed = report.error.is_some();
                println!("{}", serde_json::to_string(&report)?);
                if failed {
                    std::process::exit(1);
                }
                String::new()
            }
            Role::ManagerServe {
                listen,
                max_message,
            } => {
                let key = ipcbench::transport::manager::key_from_env()?;
                ipcbench::transport::manager::serve(&listen, &key, max_message)?;
                String::new()
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
                ipcbench::with_transport!(transport, T => match action {
                    LinkAction::Echo { count } => peer::link_echo::<T>(&addr, side, &opts, count, t)?,
                    LinkAction::Send { n, seed, max_len } => {
                        peer::link_send::<T>(&addr, side, &opts, n, pat(seed, max_len), t)?
                    }
                    LinkAction::Recv { n, seed, max_len } => {
                        peer::link_recv::<T>(&addr, side, &opts, n, pat(seed, max_len), t)?
                    }
                })
            }
        })
    }

    fn clean(dry_run: bool) -> Result<()> {
        let leftovers = region::list_leftovers().context("listing /dev/shm")?;
        if leftovers.is_empty() {
            println!("/dev/shm holds no ipcbench files");
            return Ok(());
        }
        let (mut removed, mut kept) = (0, 0);
        for l in &leftovers {
            let who = match l.creator {
                Some(c) if l.creator_alive => format!("creator pid {} is running", c.pid),
                Some(c) => format!("creator pid {} is gone", c.pid),
                None => "no readable header".to_owned(),
            };
            if region::is_stale(l, Duration::from_secs(60)) {
                if dry_run {
                    println!("would remove {} ({who})", l.name);
                } else {
                    region::remove_leftover(&l.name)
                        .with_context(|| format!("removing {}", l.name))?;
                    println!("removed {} ({who})", l.name);
                }
                removed += 1;
            } else {
                println!("kept    {} ({who})", l.name);
                kept += 1;
            }
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed}, kept {kept} in use");
        Ok(())
    }
}
