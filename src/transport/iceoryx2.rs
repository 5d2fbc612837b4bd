//! `iceoryx2`: Eclipse iceoryx2's zero-copy publish-subscribe, one service
//! per direction, used across two processes with the payload written by the
//! sender into loaned shared memory and read by the receiver from it.
//!
//! Each message is one sample of `[u8]` (payload memory grows by powers of
//! two, so 16 MiB messages fit); a `u64` user header carries the flags
//! `MORE` (unused: messages are never cut) and `CLOSE`. A subscriber polls
//! (`receive`), spinning or yielding as the link's waiting strategy says;
//! parking strategies yield, since iceoryx2 wakes sleepers through a
//! separate event service that this transport does not add. A receive
//! that can read in place (`recv_with`, as the pingpong's initiator does)
//! reads the payload where the sender wrote it, as iceoryx2's users do;
//! `recv` copies it out.
//!
//! Read against iceoryx2's own way of measuring: its publish-subscribe
//! benchmark (two pinned participants; loan, write, send; busy-poll
//! `receive`; no credit, no liveness) is `examples/iceoryx2_reference.rs`,
//! with the suite's per-message checks. On 2026-12-07, alternated with
//! `ipcbench run --transports iceoryx2 --patterns pingpong --sizes
//! 64,65536 --wait spin` on the 2-core VM, three rounds, the row's p50
//! over the reference's: 64 B 0.70, 1.00, 3.4 (the machine's speed
//! flipped between two modes, 1.1–1.5 µs and 2.5–3.4 µs, from one process
//! pair to the next); 64 KiB 0.96, 0.79, 1.16. Runs in separate processes
//! a few seconds apart cannot resolve the 15% this row is held to here:
//! that needs the reference measured beside the point, as floors are.
//!
//! A small ipcbench region beside the services records each side's process,
//! so a peer that dies is reported rather than waited for, and counts the
//! samples each side has taken. Two things of iceoryx2 0.10's
//! publish-subscribe make that count necessary for a link that loses
//! nothing: a subscriber whose buffer is full does not always get the next
//! sample a publisher sends (seen here with safe overflow off and
//! `RetryUntilDelivered`: the 17th message into a 16-deep buffer went
//! missing), and samples live in the publisher's memory, so what a process
//! publishes just before it exits may never be read. So a sender keeps at
//! most [`WINDOW`] samples unread (never more than the buffer holds), and
//! `close` waits until the peer has taken everything, the close included.

use crate::shm::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

use super::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    addr_rest,
};
use crate::shm::WaitKind;
use crate::shm::liveness::{PeerId, PeerSlot};
use crate::shm::region::{Kind, Region};
use crate::shm::unique_name;
use crate::transport::unix_stream::ACCEPT_TIMEOUT;

const CLOSE: u64 = 2;
/// The first payload allocation; larger messages grow it.
const INITIAL_SLICE: usize = 64 << 10;
/// How often a waiting side checks its peer's life.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Samples a sender keeps unread at most: the subscribers' buffer size.
const WINDOW: u64 = 16;
/// How long `close` waits for the peer to take what was sent.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The region's body: two peer slots, then one taken-counter per direction,
/// each on a cache line of its own.
const BODY: usize = 192;
const TAKEN_AT: [usize; 2] = [64, 128];

type Svc = ipc::Service;
type Pub = iceoryx2::port::publisher::Publisher<Svc, [u8], u64>;
type Sub = iceoryx2::port::subscriber::Subscriber<Svc, [u8], u64>;
type PubSub = iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], u64>;

fn iox<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> TransportError {
    move |e| TransportError::Setup(format!("iceoryx2 {what}: {e:?}"))
}

/// The prefix of every file iceoryx2 makes for this suite in /dev/shm (not
/// [`NAME_PREFIX`](crate::shm::region::NAME_PREFIX): these files have no
/// ipcbench header, and only iceoryx2 knows whether they are in use).
pub const FILE_PREFIX: &str = "ipcbench_iox2_";
/// Where iceoryx2 keeps its node and service descriptions for this suite.
pub const ROOT_DIR: &str = "/tmp/ipcbench-iox2/";

/// iceoryx2's configuration for this suite: its own file prefix and root
/// directory, so its files are told apart from other iceoryx2 users'.
fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut c = Config::default();
        c.global.prefix = FileName::new(FILE_PREFIX.as_bytes()).expect("a valid file name");
        c.global
            .set_root_path(&Path::new(ROOT_DIR.as_bytes()).expect("a valid path"));
        c
    })
}

fn node() -> Result<Node<Svc>, TransportError> {
    NodeBuilder::new()
        .config(config())
        // Signals stay ours: the harness handles Ctrl-C itself.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .map_err(iox("node"))
}

/// What [`cleanup`] did.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Dead nodes whose resources iceoryx2 removed.
    pub dead_nodes: u64,
    /// Nodes still running (whose files stay).
    pub alive_nodes: u64,
    /// Whether the global management segment was removed.
    pub global_segment: bool,
}

/// Removes what iceoryx2 left for this suite, through its own API: the
/// resources of dead nodes, and, once no node of the suite is left, the
/// global management segment (which iceoryx2 keeps for the life of the
/// machine otherwise). With `dry_run`, only counts.
pub fn cleanup(dry_run: bool) -> Result<Cleanup, TransportError> {
    let mut out = Cleanup::default();
    let mut states = Vec::new();
    Node::<Svc>::list(config(), |s| {
        states.push(matches!(s, NodeState::Alive(_)));
        CallbackProgression::Continue
    })
    .map_err(iox("listing nodes"))?;
    out.alive_nodes = states.iter().filter(|&&a| a).count() as u64;
    let dead = states.len() as u64 - out.alive_nodes;
    if dry_run {
        out.dead_nodes = dead;
        out.global_segment = out.alive_nodes == 0 && global_segment_exists();
        return Ok(out);
    }
    if dead > 0 {
        // A node of our own does the cleaning (creating it cleans already),
        // then goes.
        let _ = node()?.try_cleanup_dead_nodes();
    }
    let (mut alive, mut still_dead) = (0, 0);
    Node::<Svc>::list(config(), |s| {
        match s {
            NodeState::Alive(_) => alive += 1,
            _ => still_dead += 1,
        }
        CallbackProgression::Continue
    })
    .map_err(iox("listing nodes"))?;
    out.alive_nodes = alive;
    out.dead_nodes = dead.saturating_sub(still_dead);
    if alive == 0 && global_segment_exists() {
        // SAFETY: no node of this suite's iceoryx2 domain is running (just
        // listed); one starting this instant would make a new segment, and
        // one that had mapped the old one keeps its mapping.
        out.global_segment =
            unsafe { iceoryx2::testing::remove_global_mgmt_segment::<Svc>(config()) }
                .map_err(iox("removing the global segment"))?;
    }
    Ok(out)
}

fn global_segment_exists() -> bool {
    std::fs::read_dir("/dev/shm").is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(FILE_PREFIX) && n.ends_with(".global_mgmt")
        })
    })
}

fn service(node: &Node<Svc>, name: &str) -> Result<PubSub, TransportError> {
    let name: ServiceName = name.try_into().map_err(iox("service name"))?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .user_header::<u64>()
        .enable_safe_overflow(false)
        .history_size(0)
        .subscriber_max_buffer_size(WINDOW as usize)
        .max_publishers(2)
        .max_subscribers(2)
        .open_or_create()
        .map_err(iox("service"))
}

/// The `iceoryx2` strategy.
pub struct Iceoryx2;

/// The services (kept open by the coordinator) and the liveness region.
pub struct Iceoryx2Setup {
    services: Option<[PubSub; 2]>,
    node: Option<Node<Svc>>,
    _region: Region,
}

// SAFETY: the setup is created and dropped by the coordinator and not used
// in between; iceoryx2's single-threaded handles are only moved, with every
// clone of their shared state inside this value.
unsafe impl Send for Iceoryx2Setup {}

impl LinkSetup for Iceoryx2Setup {}

impl Drop for Iceoryx2Setup {
    fn drop(&mut self) {
        // Remove what peers that died left in /dev/shm, and, once no node
        // runs, the global segment.
        self.services = None;
        if let Some(node) = self.node.take() {
            let _ = node.try_cleanup_dead_nodes();
        }
        let _ = cleanup(false);
    }
}

/// Parses `iceoryx2:REGION,SERVICE_AB,SERVICE_BA`.
fn parts(addr: &str) -> Result<(&str, &str, &str), TransportError> {
    let rest = addr_rest(addr, Iceoryx2::NAME)?;
    let mut it = rest.splitn(3, ',');
    match (it.next(), it.next(), it.next()) {
        (Some(r), Some(ab), Some(ba)) => Ok((r, ab, ba)),
        _ => Err(TransportError::Setup(format!(
            "bad iceoryx2 address `{addr}`"
        ))),
    }
}

/// Where a wait stands: when it began, when to look at the peer next.
struct Waiting {
    start: Instant,
    next_check: Instant,
    timeout: Option<Duration>,
}

impl Waiting {
    fn new(timeout: Option<Duration>) -> Waiting {
        let start = Instant::now();
        Waiting {
            start,
            next_check: start + CHECK_EVERY,
            timeout,
        }
    }
}

/// One side: publishes on one service and subscribes to the other.
pub struct Iceoryx2Conn {
    publisher: Pub,
    subscriber: Sub,
    _services: [PubSub; 2],
    _node: Node<Svc>,
    region: Arc<Region>,
    me: PeerId,
    my_slot: usize,
    /// Samples this side has published.
    sent: u64,
    spin: bool,
    max: usize,
    timeout: Option<Duration>,
    closed: bool,
    peer_closed: bool,
}

// SAFETY: as for the setup: a connection is used by one thread at a time,
// and all of iceoryx2's single-threaded shared state it refers to is owned
// by this value, so moving it whole to another thread is sound.
unsafe impl Send for Iceoryx2Conn {}

fn slots(region: &Region) -> &[PeerSlot] {
    // SAFETY: the region's body starts with two peer slots (made in setup).
    unsafe { std::slice::from_raw_parts(region.body_ptr() as *const PeerSlot, 2) }
}

/// The count of samples taken by the receiver of direction `dir` (0: A to B).
fn taken(region: &Region, dir: usize) -> &AtomicU64 {
    // SAFETY: the body is `BODY` bytes, zeroed at creation, and
    // `TAKEN_AT[dir] + 8 <= BODY` with 8-byte alignment; the counters are
    // only ever accessed atomically.
    unsafe { &*(region.body_ptr().add(TAKEN_AT[dir]) as *const AtomicU64) }
}

impl Iceoryx2Conn {
    /// The direction this side sends on.
    fn out_dir(&self) -> usize {
        self.my_slot
    }

    /// Waits, spinning or yielding, until `done` holds; checks the peer's
    /// life every [`CHECK_EVERY`]. While `draining`, samples that arrive are
    /// taken and dropped (a closing side reads nothing more, but a peer
    /// closing at the same time waits for its close to be taken).
    fn wait_for(
        &mut self,
        timeout: Option<Duration>,
        draining: bool,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), TransportError> {
        let mut w = Waiting::new(timeout);
        while !done(self) {
            if draining && self.subscriber.receive().map_err(iox("receive"))?.is_some() {
                taken(&self.region, 1 - self.out_dir()).fetch_add(1, Ordering::Release);
                continue;
            }
            if let Err(e) = self.idle(&mut w, true) {
                // The peer may have taken the last sample and left between
                // the look at `done` above and the look at the peer.
                return if done(self) { Ok(()) } else { Err(e) };
            }
        }
        Ok(())
    }

    /// One idle step of a wait: spin or yield; every [`CHECK_EVERY`], fail
    /// if the peer died, if it closed (when `closed_is_gone`: it will read
    /// nothing more), or if the timeout passed.
    fn idle(&self, w: &mut Waiting, closed_is_gone: bool) -> Result<(), TransportError> {
        if self.spin {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        let now = Instant::now();
        if now < w.next_check {
            return Ok(());
        }
        w.next_check = now + CHECK_EVERY;
        let peer = &slots(&self.region)[1 - self.my_slot];
        if let Some(p) = peer.dead_holder() {
            return Err(TransportError::PeerGone(format!(
                "process {} died without closing",
                p.pid
            )));
        }
        if closed_is_gone && peer.get().is_none() {
            return Err(TransportError::PeerGone(
                "the peer closed without reading what was sent".into(),
            ));
        }
        if w.timeout.is_some_and(|t| now - w.start >= t) {
            return Err(TransportError::Timeout);
        }
        Ok(())
    }

    fn publish(&mut self, flags: u64, msg: &[u8]) -> Result<(), TransportError> {
        // Never more unread samples than the peer's buffer holds.
        let dir = self.out_dir();
        if self.sent - taken(&self.region, dir).load(Ordering::Acquire) >= WINDOW {
            let (sent, timeout) = (self.sent, self.timeout);
            self.wait_for(timeout, false, |c| {
                sent - taken(&c.region, dir).load(Ordering::Acquire) < WINDOW
            })?;
        }
        let mut sample = self
            .publisher
            .loan_slice_uninit(msg.len())
            .map_err(iox("loan"))?;
        *sample.user_header_mut() = flags;
        let sample = sample.write_from_slice(msg);
        sample
            .send()
            .map_err(|e| TransportError::PeerGone(format!("iceoryx2 send: {e:?}")))?;
        self.sent += 1;
        Ok(())
    }
}

impl Conn for Iceoryx2Conn {
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        super::check_len(msg.len(), self.max)?;
        self.publish(0, msg)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        self.take(|payload| {
            buf.clear();
            buf.extend_from_slice(payload);
            payload.len()
        })
    }

    /// `f` reads the payload where the sender wrote it, in iceoryx2's
    /// shared memory: no copy out.
    fn recv_with<R>(
        &mut self,
        _buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TransportError> {
        self.take(f)
    }

    /// Checks the payload where the sender wrote it and sends it back
    /// from there: loaned, filled from the received sample, sent (one
    /// copy, as the shared-memory ring's echo makes).
    fn echo_with<R, E>(
        &mut self,
        _buf: &mut Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<R, E>,
    ) -> Result<Result<R, E>, TransportError> {
        self.take_with(|c, payload| {
            let r = check(payload);
            if r.is_ok() {
                c.publish(0, payload)?;
            }
            Ok(r)
        })?
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = timeout;
        Ok(())
    }

    fn close(mut self) -> Result<(), TransportError> {
        self.close_inner()
    }
}

impl Iceoryx2Conn {
    /// Waits for the next sample and hands its payload to `f`.
    fn take<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TransportError> {
        self.take_with(|_, payload| f(payload))
    }

    /// Waits for the next sample and hands its payload to `f` with this
    /// connection, the sample held until `f` returns (to send from it).
    fn take_with<R>(&mut self, f: impl FnOnce(&mut Self, &[u8]) -> R) -> Result<R, TransportError> {
        if self.peer_closed {
            return Err(TransportError::Closed);
        }
        let mut w = Waiting::new(self.timeout);
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(iox("receive"))? {
                taken(&self.region, 1 - self.out_dir()).fetch_add(1, Ordering::Release);
                let flags = *sample.user_header();
                if flags & !CLOSE != 0 {
                    return Err(TransportError::Malformed(format!(
                        "unknown sample flags {flags:#x}"
                    )));
                }
                if flags == CLOSE {
                    self.peer_closed = true;
                    return Err(TransportError::Closed);
                }
                let payload = sample.payload();
                if payload.len() > self.max {
                    return Err(TransportError::Malformed(format!(
                        "sample of {} bytes exceeds the limit of {} bytes",
                        payload.len(),
                        self.max
                    )));
                }
                return Ok(f(self, payload));
            }
            // A peer that closed sent its close first: keep reading.
            self.idle(&mut w, false)?;
        }
    }

    fn close_inner(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        // A peer that closed first reads nothing more: no close to send.
        let r = if self.peer_closed {
            Ok(())
        } else {
            self.publish(CLOSE, &[]).and_then(|()| {
                // The samples live in this process: stay until the peer took
                // them all.
                let (dir, sent) = (self.out_dir(), self.sent);
                self.wait_for(Some(CLOSE_WAIT), true, |c| {
                    taken(&c.region, dir).load(Ordering::Acquire) >= sent
                })
            })
        };
        slots(&self.region)[self.my_slot].release(self.me);
        r
    }
}

impl Drop for Iceoryx2Conn {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl Transport for Iceoryx2 {
    const NAME: &'static str = "iceoryx2";
    type Setup = Iceoryx2Setup;
    type Conn = Iceoryx2Conn;

    fn setup(opts: &LinkOpts) -> Result<(Iceoryx2Setup, Endpoint), TransportError> {
        let region_name = unique_name(&opts.label);
        let region = Region::create(&region_name, Kind::Raw, BODY, [0; 6])
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        region.publish();
        let base = format!("ipcbench/{region_name}");
        let (ab, ba) = (format!("{base}/ab"), format!("{base}/ba"));
        let node = node()?;
        let services = [service(&node, &ab)?, service(&node, &ba)?];
        Ok((
            Iceoryx2Setup {
                services: Some(services),
                node: Some(node),
                _region: region,
            },
            Endpoint::new(
                format!("{}:{region_name},{ab},{ba}", Self::NAME),
                Vec::new(),
            ),
        ))
    }

    fn connect(ep: &Endpoint, side: Side, opts: &LinkOpts) -> Result<Iceoryx2Conn, TransportError> {
        let (region_name, ab, ba) = parts(&ep.addr)?;
        let region = Arc::new(
            Region::open(region_name, Kind::Raw)
                .map_err(|e| TransportError::Setup(e.to_string()))?,
        );
        let my_slot = if side == Side::A { 0 } else { 1 };
        let me = PeerId::current();
        slots(&region)[my_slot].claim(me).map_err(|holder| {
            TransportError::Setup(format!(
                "side {} is already held by process {}",
                side.name(),
                holder.pid
            ))
        })?;
        let node = node()?;
        let (out_name, in_name) = if side == Side::A { (ab, ba) } else { (ba, ab) };
        let out = service(&node, out_name)?;
        let inp = service(&node, in_name)?;
        let publisher = out
            .publisher_builder()
            .initial_max_slice_len(INITIAL_SLICE.min(opts.max_message.max(1)))
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .set_backpressure_handler(|_: &iceoryx2::port::BackpressureInfo| {
                iceoryx2::port::BackpressureAction::Retry
            })
            .create()
            .map_err(iox("publisher"))?;
        let subscriber = inp
            .subscriber_builder()
            .buffer_size(WINDOW as usize)
            .create()
            .map_err(iox("subscriber"))?;
        // Nothing sent before the peer subscribes would reach it: wait for it.
        let t0 = Instant::now();
        while out.dynamic_config().number_of_subscribers() == 0 {
            if t0.elapsed() > ACCEPT_TIMEOUT {
                return Err(TransportError::Setup(format!(
                    "side {} did not subscribe within {} s",
                    side.other().name(),
                    ACCEPT_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(Iceoryx2Conn {
            publisher,
            subscriber,
            _services: [out, inp],
            _node: node,
            region,
            me,
            my_slot,
            sent: 0,
            spin: opts.wait.kind == WaitKind::Spin,
            max: opts.max_message,
            timeout: None,
            closed: false,
            peer_closed: false,
        })
    }
}

/// Node, inbound service, its subscriber and publisher, and the outbound
/// service and subscriber of a stand-in.
type StandInPorts = (Node<Svc>, PubSub, Sub, Pub, (PubSub, Sub));

/// The stand-in's iceoryx2 handles, kept on the thread that made them.
struct StandIn {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The link's region and the stand-in's liveness slot in it.
    region: Region,
    slot: usize,
}

impl Drop for StandIn {
    /// Goes as a process that dies: its ports closed without a word, then
    /// its slot naming a process that is no more.
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        slots(&self.region)[self.slot].set(Some(PeerId {
            pid: PeerId::current().pid,
            start: 1,
        }));
    }
}

impl Inject for Iceoryx2 {
    fn inject(
        ep: &Endpoint,
        victim: Side,
        what: Malformation,
    ) -> Result<Box<dyn Send>, TransportError> {
        let (region_name, ab, ba) = parts(&ep.addr)?;
        let (inbound, outbound) = if victim == Side::A {
            (ba, ab)
        } else {
            (ab, ba)
        };
        let (inbound, outbound) = (inbound.to_owned(), outbound.to_owned());
        let region = Region::open(region_name, Kind::Raw)
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        // The stand-in holds the peer's slot as this process, alive until
        // it is dropped: registered as dead from the start, a victim that
        // looked at it before the bad sample came (10 ms, beside a build)
        // reported the peer gone, never the malformed frame.
        let slot = if victim == Side::A { 1 } else { 0 };
        slots(&region)[slot].set(Some(PeerId::current()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let run = || -> Result<StandInPorts, TransportError> {
                let node = node()?;
                // Subscribe to what the victim sends, as its peer would.
                let out_svc = service(&node, &outbound)?;
                let out_sub = out_svc
                    .subscriber_builder()
                    .create()
                    .map_err(iox("subscriber"))?;
                let svc = service(&node, &inbound)?;
                let publisher = svc
                    .publisher_builder()
                    .initial_max_slice_len(INITIAL_SLICE)
                    .allocation_strategy(AllocationStrategy::PowerOfTwo)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()
                    .map_err(iox("publisher"))?;
                // A subscriber of our own holds the sample until the victim
                // subscribes; without one, nothing would be delivered.
                let sub = svc
                    .subscriber_builder()
                    .create()
                    .map_err(iox("subscriber"))?;
                Ok((node, svc, sub, publisher, (out_svc, out_sub)))
            };
            match run() {
                Ok((node, svc, sub, publisher, outbound)) => {
                    let _ = ready_tx.send(Ok(()));
                    // Publish once the victim subscribes (a second subscriber).
                    let t0 = Instant::now();
                    while svc.dynamic_config().number_of_subscribers() < 2
                        && t0.elapsed() < ACCEPT_TIMEOUT
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    // iceoryx2 carries lengths itself; what a broken peer can
                    // send is a header no correct peer writes.
                    let (flags, len) = match what {
                        Malformation::OversizedLength => (u64::MAX, 0),
                        Malformation::Truncated => (1, 16),
                    };
                    if let Ok(mut s) = publisher.loan_slice_uninit(len) {
                        *s.user_header_mut() = flags;
                        let _ = s.write_from_slice(&vec![0xAB; len]).send();
                    }
                    let _ = stop_rx.recv();
                    drop((sub, publisher, svc, outbound, node));
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| TransportError::Setup("the iceoryx2 stand-in died".into()))??;
        Ok(Box::new(StandIn {
            stop,
            thread: Some(thread),
            region,
            slot,
        }))
    }
}
