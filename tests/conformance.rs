//! One conformance suite, run against every transport: side A lives in the
//! test process, side B is a real `ipcbench peer link …` child process.
//!
//! Each strategy must: carry 0 B, 1 B, 64 KiB and 16 MiB messages intact
//! both ways; stream 100 000 checked messages either way; report an orderly
//! close as end-of-stream; report a SIGKILLed peer as gone within a deadline
//! (never hang); refuse malformed frames with a clear error and no large
//! allocation; and leave nothing in /dev/shm or the socket directory.
#![cfg(not(loom))]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use ipcbench::harness::child::roles::{Frames, link_command};
use ipcbench::transport::{
    Conn, Endpoint, Inject, LinkOpts, LinkSetup, Malformation, Side, Transport, TransportError,
    TransportKind,
};

const OP_TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(240);

struct Link<T: Transport> {
    setup: Option<T::Setup>,
    ep: Endpoint,
    opts: LinkOpts,
    label: String,
    kind: TransportKind,
    /// Held by a transport whose files do not carry the label (iceoryx2
    /// names its own): its links run one at a time, so that everything of
    /// its kind left after one is that link's.
    _alone: Option<std::sync::MutexGuard<'static, ()>>,
}

/// For [`Link::_alone`].
static UNLABELLED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where a transport keeps files whose names do not carry the label, and
/// the prefix they have there.
fn unlabelled_files(kind: TransportKind) -> Vec<(std::path::PathBuf, &'static str)> {
    match kind {
        #[cfg(feature = "iceoryx2")]
        TransportKind::Iceoryx2 => {
            use ipcbench::transport::iceoryx2::{FILE_PREFIX, ROOT_DIR};
            vec![
                ("/dev/shm".into(), FILE_PREFIX),
                (std::path::Path::new(ROOT_DIR).join("nodes"), ""),
                (std::path::Path::new(ROOT_DIR).join("services"), ""),
            ]
        }
        _ => Vec::new(),
    }
}

fn kind_of<T: Transport>() -> TransportKind {
    T::NAME.parse().expect("every transport is in the registry")
}

fn start<T: Transport>(test: &str) -> Link<T> {
    // Unique per test and per run of the suite (this process's pid), so
    // the leftover check looks only at this test's names: not at what a
    // run that was killed left, which `ipcbench clean` is for.
    let label = format!("conf{}-{}-{test}", std::process::id(), T::NAME);
    let opts = LinkOpts {
        exe: bin().into(),
        label: label.clone(),
        ..LinkOpts::default()
    };
    let kind = kind_of::<T>();
    let alone = (!unlabelled_files(kind).is_empty())
        .then(|| UNLABELLED.lock().unwrap_or_else(|e| e.into_inner()));
    let (setup, ep) = T::setup(&opts).unwrap_or_else(|e| panic!("{}: setup: {e}", T::NAME));
    Link {
        setup: Some(setup),
        ep,
        opts,
        label,
        kind,
        _alone: alone,
    }
}

impl<T: Transport> Link<T> {
    fn spawn_b(&self, action: &[String]) -> Child {
        link_command(
            bin().as_ref(),
            self.kind,
            &self.ep,
            Side::B,
            self.opts.max_message,
            action,
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting side B")
    }

    /// Connects side A here, then lets go of what only the child needed.
    fn connect_a(&mut self) -> T::Conn {
        let mut c = T::connect(&self.ep, Side::A, &self.opts)
            .unwrap_or_else(|e| panic!("{}: connect A: {e}", T::NAME));
        c.set_timeout(Some(OP_TIMEOUT)).unwrap();
        if let Some(s) = self.setup.as_mut() {
            s.children_started();
        }
        c
    }

    /// Drops the setup and checks that nothing of this link is left.
    fn finish(mut self) {
        drop(self.setup.take());
        for dir in ["/dev/shm".into(), std::env::temp_dir()]
            .into_iter()
            .chain(std::env::var_os("XDG_RUNTIME_DIR").map(Into::into))
        {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains(&self.label),
                    "{}: {} left behind in {}",
                    T::NAME,
                    name,
                    dir.display()
                );
            }
        }
        #[cfg(feature = "iceoryx2")]
        if self.kind == TransportKind::Iceoryx2 {
            // Another process's iceoryx2 node (a benchmark running beside
            // the tests) would have files here that are not this link's.
            let others = ipcbench::transport::iceoryx2::cleanup(true).map_or(0, |c| c.alive_nodes);
            if others > 0 {
                eprintln!(
                    "iceoryx2: leftover check skipped: {others} node(s) of another process run"
                );
                return;
            }
        }
        for (dir, prefix) in unlabelled_files(self.kind) {
            let left: Vec<_> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect();
            assert!(
                left.is_empty(),
                "{}: left behind in {}: {left:?}",
                T::NAME,
                dir.display()
            );
        }
    }
}

fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0; len];
    Frames {
        seed: 11,
        max_len: 0,
    }
    .fill(seq, &mut m);
    m
}

fn messages_of_every_size<T: Transport>() {
    let mut link = start::<T>("sizes");
    let echo = link.spawn_b(&args!["echo"]);
    let mut a = link.connect_a();
    let mut buf = Vec::new();
    for (i, len) in [0usize, 1, 64 << 10, 16 << 20].into_iter().enumerate() {
        let msg = message(i as u64, len);
        a.send(&msg)
            .unwrap_or_else(|e| panic!("{}: send {len} B: {e}", T::NAME));
        let got = a
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{}: recv {len} B: {e}", T::NAME));
        assert_eq!(got, len, "{}: echo length", T::NAME);
        assert!(buf == msg, "{}: the {len}-byte echo differs", T::NAME);
    }
    a.close().unwrap();
    let f = finish(echo, Instant::now() + DEADLINE, T::NAME);
    assert_eq!(f.report().messages, 4, "{}: {}", T::NAME, f.stderr);
    link.finish();
}

const STREAM: u64 = 100_000;
const STREAM_MAX: usize = 512;

fn stream_a_to_b<T: Transport>() {
    let mut link = start::<T>("stream-ab");
    let rx = link.spawn_b(&args!["recv", STREAM, 5, STREAM_MAX]);
    let mut a = link.connect_a();
    let pat = Frames {
        seed: 5,
        max_len: STREAM_MAX,
    };
    let mut msg = Vec::new();
    for seq in 0..STREAM {
        msg.resize(pat.len(seq), 0);
        pat.fill(seq, &mut msg);
        a.send(&msg)
            .unwrap_or_else(|e| panic!("{}: send {seq}: {e}", T::NAME));
    }
    a.close().unwrap();
    let f = finish(rx, Instant::now() + DEADLINE, T::NAME);
    assert_eq!(f.report().messages, STREAM, "{}", T::NAME);
    link.finish();
}

fn stream_b_to_a<T: Transport>() {
    let mut link = start::<T>("stream-ba");
    let tx = link.spawn_b(&args!["send", STREAM, 6, STREAM_MAX]);
    let mut a = link.connect_a();
    let pat = Frames {
        seed: 6,
        max_len: STREAM_MAX,
    };
    let (mut buf, mut scratch) = (Vec::new(), Vec::new());
    for seq in 0..STREAM {
        a.recv(&mut buf)
            .unwrap_or_else(|e| panic!("{}: recv {seq}: {e}", T::NAME));
        pat.check(seq, &buf, &mut scratch)
            .unwrap_or_else(|e| panic!("{}: {e}", T::NAME));
    }
    assert!(
        matches!(a.recv(&mut buf), Err(TransportError::Closed)),
        "{}",
        T::NAME
    );
    assert_eq!(
        finish(tx, Instant::now() + DEADLINE, T::NAME)
            .report()
            .messages,
        STREAM
    );
    drop(a);
    link.finish();
}

fn orderly_close_is_end_of_stream<T: Transport>() {
    let mut link = start::<T>("close");
    let echo = link.spawn_b(&args!["echo", "--count", 1]);
    let mut a = link.connect_a();
    let mut buf = Vec::new();
    a.send(b"only").unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 4);
    let e = a.recv(&mut buf).unwrap_err();
    assert!(matches!(e, TransportError::Closed), "{}: {e}", T::NAME);
    // Closed stays closed.
    assert!(
        matches!(a.recv(&mut buf), Err(TransportError::Closed)),
        "{}",
        T::NAME
    );
    assert_eq!(
        finish(echo, Instant::now() + DEADLINE, T::NAME)
            .report()
            .messages,
        1
    );
    drop(a);
    link.finish();
}

fn killed_peer_is_reported_not_hung<T: Transport>() {
    let mut link = start::<T>("kill");
    let mut tx = link.spawn_b(&args!["send", u64::MAX / 2, 9, 64]);
    let mut a = link.connect_a();
    let pat = Frames {
        seed: 9,
        max_len: 64,
    };
    let (mut buf, mut scratch) = (Vec::new(), Vec::new());
    for seq in 0..100 {
        a.recv(&mut buf).unwrap();
        pat.check(seq, &buf, &mut scratch).unwrap();
    }
    tx.kill().unwrap();
    let killed = Instant::now();
    tx.wait().unwrap();
    let e = loop {
        match a.recv(&mut buf) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(e, TransportError::PeerGone(_)),
        "{}: a SIGKILLed peer must be reported as gone, got: {e}",
        T::NAME
    );
    assert!(killed.elapsed() < OP_TIMEOUT, "{}", T::NAME);
    eprintln!(
        "{}: killed peer reported after {:.1} ms: {e}",
        T::NAME,
        killed.elapsed().as_secs_f64() * 1e3
    );
    drop(a);
    link.finish();
}

fn malformed_frames_are_clear_errors<T: Transport + Inject>() {
    for what in [Malformation::OversizedLength, Malformation::Truncated] {
        let mut link = start::<T>(&format!("bad-{what:?}").to_lowercase());
        let stand_in = T::inject(&link.ep, Side::A, what)
            .unwrap_or_else(|e| panic!("{}: inject: {e}", T::NAME));
        let mut a = link.connect_a();
        let mut stand_in = Some(stand_in);
        if what == Malformation::Truncated {
            // The stand-in vanishes in the middle of its message.
            drop(stand_in.take());
        }
        let mut buf = Vec::new();
        let e = a.recv(&mut buf).unwrap_err();
        // A length past the limit is malformed, whoever sent it (the
        // stand-in is still there); a frame cut short by a stand-in that
        // vanished is malformed or a peer gone, as the link can tell.
        let right = match what {
            Malformation::OversizedLength => matches!(e, TransportError::Malformed(_)),
            Malformation::Truncated => matches!(
                e,
                TransportError::Malformed(_) | TransportError::PeerGone(_)
            ),
        };
        assert!(right, "{} {what:?}: got {e}", T::NAME);
        assert!(
            buf.capacity() <= 4 << 20,
            "{} {what:?}: the receiver allocated {} bytes for a bad frame",
            T::NAME,
            buf.capacity()
        );
        eprintln!("{} {what:?}: {e}", T::NAME);
        // The broken peer goes first: a victim closing while it is alive
        // waits for it to take what it was sent (up to its timeout).
        drop(stand_in);
        drop(a);
        link.finish();
    }
}

/// ZeroMQ refuses a frame beyond the link's limit (`ZMQ_MAXMSGSIZE`) by
/// dropping the connection, before allocating anything for it, and tells
/// its user no more than that the connection dropped: the receiver reports
/// the peer gone and says the limit may be why. A frame cut short by a
/// stand-in that vanished is a peer gone too. A message the stand-in did
/// complete is never delivered in either case.
#[cfg(feature = "zeromq")]
fn zmq_malformed_frames_drop_the_connection<T: Transport + Inject>() {
    for what in [Malformation::OversizedLength, Malformation::Truncated] {
        let mut link = start::<T>(&format!("bad-{what:?}").to_lowercase());
        let stand_in = T::inject(&link.ep, Side::A, what)
            .unwrap_or_else(|e| panic!("{}: inject: {e}", T::NAME));
        let mut a = link.connect_a();
        a.set_timeout(Some(OP_TIMEOUT)).unwrap();
        let mut stand_in = Some(stand_in);
        if what == Malformation::Truncated {
            drop(stand_in.take());
        }
        let mut buf = Vec::new();
        let e = a.recv(&mut buf).unwrap_err();
        match (what, &e) {
            (Malformation::OversizedLength, TransportError::PeerGone(why)) => {
                assert!(why.contains("limit"), "{} {what:?}: {why}", T::NAME)
            }
            (Malformation::Truncated, TransportError::PeerGone(_)) => {}
            _ => panic!("{} {what:?}: got {e}", T::NAME),
        }
        assert!(
            buf.capacity() == 0,
            "{} {what:?}: a bad frame reached the caller",
            T::NAME
        );
        eprintln!("{} {what:?}: {e}", T::NAME);
        drop(stand_in);
        drop(a);
        link.finish();
    }
}

/// The manager's own checks: a wrong or missing authkey is refused and the
/// server goes on serving; malformed frames and requests get clear errors
/// and leave the server serving.
fn manager_refuses_bad_keys_and_bad_requests<F: ipcbench::transport::manager::Family>() {
    use ipcbench::transport::manager::{Manager, Proxy};
    type M<F> = Manager<F>;
    let link = start::<M<F>>("auth");
    let echo = link.spawn_b(&args!["echo"]);
    // A wrong key and an empty key are refused...
    for key in [&[7u8; 32][..], &[][..]] {
        let e = M::<F>::connect_with_key(&link.ep, Side::A, &link.opts, key)
            .err()
            .unwrap_or_else(|| panic!("{}: a wrong key was accepted", F::NAME));
        assert!(matches!(e, TransportError::Auth(_)), "{}: {e}", F::NAME);
        assert!(e.to_string().contains("refused"), "{}: {e}", F::NAME);
    }
    // ...a raw client that sends a frame with an absurd length is dropped...
    let addr = link.ep.addr.split_once(':').unwrap().1.to_owned();
    {
        use ipcbench::transport::stream::StreamIo;
        let mut raw = F::connect(&addr).unwrap();
        raw.set_kernel_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = raw.write(&[std::io::IoSlice::new(&(u32::MAX - 1).to_le_bytes())]);
        let mut sink = [0u8; 64];
        // The server sends its challenge, then closes on the bad frame.
        let mut total = 0;
        loop {
            match raw.read(&mut sink) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    assert!(
                        e.kind() != std::io::ErrorKind::WouldBlock,
                        "{}: the server kept a malformed connection open",
                        F::NAME
                    );
                    break;
                }
            }
        }
        assert!(
            total <= 64,
            "{}: the server said more than its challenge",
            F::NAME
        );
    }
    // ...and an authenticated client's malformed request gets an error reply
    // on a connection that stays usable.
    let key = ipcbench::transport::manager::from_hex(&link.ep.env[0].1).unwrap();
    let mut proxy = Proxy::new(F::connect(&addr).unwrap(), &key, 1 << 20).unwrap();
    let e = proxy.raw_request(&[2, 200, 1]).unwrap_err();
    assert!(
        matches!(e, TransportError::Malformed(_)),
        "{}: {e}",
        F::NAME
    );
    assert_eq!(proxy.counter_add(5).unwrap(), 5);
    proxy.dict_set(b"k", b"v").unwrap();
    let mut v = Vec::new();
    assert_eq!(proxy.dict_get(b"k", &mut v).unwrap(), Some(1));
    assert_eq!(v, b"v");
    proxy.lock_acquire().unwrap();
    proxy.lock_release().unwrap();
    // The list, the namespace and the typed value, as Manager().list(),
    // .Namespace() and .Value('d', …) are used; their bad requests get
    // error replies on a connection that stays usable.
    assert_eq!(proxy.list_append(b"l", b"Hello").unwrap(), 1);
    assert_eq!(proxy.list_append(b"l", b"World").unwrap(), 2);
    for (i, want) in [
        (0, &b"Hello"[..]),
        (1, b"World"),
        (-1, b"World"),
        (-2, b"Hello"),
    ] {
        proxy.list_get(b"l", i, &mut v).unwrap();
        assert_eq!(v, want, "{}: l[{i}]", F::NAME);
    }
    for i in [2, -3, i64::MIN, i64::MAX] {
        let e = proxy.list_get(b"l", i, &mut v).unwrap_err();
        assert!(
            e.to_string().contains("out of range"),
            "{}: l[{i}]: {e}",
            F::NAME
        );
    }
    assert_eq!(proxy.ns_get(b"x", &mut v).unwrap(), None);
    proxy.ns_set(b"x", b"10").unwrap();
    assert_eq!(proxy.ns_get(b"x", &mut v).unwrap(), Some(2));
    assert_eq!(v, b"10");
    assert_eq!(proxy.value_get(b"d").unwrap(), None);
    proxy.value_set(b"d", 3.25).unwrap();
    assert_eq!(proxy.value_get(b"d").unwrap(), Some(3.25));
    for bad in [&[13u8, 1, b'd', 1, 2, 3][..], &[10, 1, b'l', 0, 0]] {
        let e = proxy.raw_request(bad).unwrap_err();
        assert!(
            matches!(e, TransportError::Malformed(_)),
            "{}: {e}",
            F::NAME
        );
    }
    assert_eq!(proxy.value_get(b"d").unwrap(), Some(3.25));
    drop(proxy);
    the_right_client_still_gets_its_echo(link, echo);
}

/// The checks of reqrep-list, -namespace and -value's clients can fail:
/// an object another client changed between a client's write and its
/// read (what a server that mixed its objects up would answer) is caught,
/// never counted; and a `Value('d')` gives back every 8-byte message,
/// NaN bit patterns included.
fn manager_object_clients_check_every_answer<F: ipcbench::transport::manager::Family>() {
    use ipcbench::harness::child::bodies::{ListCalls, NamespaceCalls, ObjectCalls, ValueCalls};
    use ipcbench::harness::validate::Codec;
    use ipcbench::transport::manager::{Manager, Proxy, from_hex};
    let link = start::<Manager<F>>("objs");
    let echo = link.spawn_b(&args!["echo"]);
    let addr = link.ep.addr.split_once(':').unwrap().1.to_owned();
    let key = from_hex(&link.ep.env[0].1).unwrap();
    let proxy = || Proxy::new(F::connect(&addr).unwrap(), &key, 1 << 20).unwrap();
    let mut other = proxy();
    let mut back = Vec::new();
    // A list: each append's answer (the length) must be one more than the
    // last, and list[i] the item appended.
    let mut list = ListCalls::new(proxy());
    list.set(b"l", b"one").unwrap();
    assert!(list.get(b"l", &mut back).unwrap());
    assert_eq!(back, b"one", "{}", F::NAME);
    other.list_append(b"l", b"intruder").unwrap();
    let e = list.set(b"l", b"two").unwrap_err();
    assert!(e.contains("length is 3 where 2"), "{}: {e}", F::NAME);
    // A Namespace: the message read back is checked.
    let codec = Codec::new(64).unwrap();
    let (mut mine, mut theirs) = (codec.buffer(), codec.buffer());
    codec.stamp(&mut mine, 7, 0);
    codec.stamp(&mut theirs, 8, 0);
    let mut ns = NamespaceCalls(proxy());
    assert!(!ns.get(b"x", &mut back).unwrap(), "{}: unset", F::NAME);
    ns.set(b"x", &mine).unwrap();
    assert!(ns.get(b"x", &mut back).unwrap());
    codec.check(&back, 7).unwrap();
    other.ns_set(b"x", &theirs).unwrap();
    assert!(ns.get(b"x", &mut back).unwrap());
    assert!(
        codec.check(&back, 7).is_err(),
        "{}: another's value passed",
        F::NAME
    );
    // A Value('d'): every 8-byte message survives, as a double's bits.
    let tiny = Codec::new(8).unwrap();
    let mut value = ValueCalls(proxy());
    let mut m = tiny.buffer();
    for seq in [0, 1, (7 << 24) | 5, u64::from(u32::MAX)] {
        tiny.stamp(&mut m, seq, 0);
        value.set(b"v", &m).unwrap();
        assert!(value.get(b"v", &mut back).unwrap());
        tiny.check(&back, seq).unwrap();
    }
    for bits in [[0xFF; 8], f64::NAN.to_le_bytes(), (-0.0f64).to_le_bytes()] {
        value.set(b"v", &bits).unwrap();
        assert!(value.get(b"v", &mut back).unwrap());
        assert_eq!(back, bits, "{}", F::NAME);
    }
    assert!(value.set(b"v", b"seven bytes").is_err(), "{}", F::NAME);
    tiny.stamp(&mut m, 9, 0);
    value.set(b"v", &m).unwrap();
    other.value_set(b"v", 1.5).unwrap();
    assert!(value.get(b"v", &mut back).unwrap());
    assert!(
        tiny.check(&back, 9).is_err(),
        "{}: another's value passed",
        F::NAME
    );
    drop((other, list, ns, value));
    the_right_client_still_gets_its_echo(link, echo);
}

/// After what a manager refused or dropped, side A's own client still
/// gets its message echoed by side B, and the link ends in order.
fn the_right_client_still_gets_its_echo<F: ipcbench::transport::manager::Family>(
    mut link: Link<ipcbench::transport::manager::Manager<F>>,
    echo: Child,
) {
    let mut a = link.connect_a();
    let mut buf = Vec::new();
    a.send(b"after the intruders").unwrap();
    a.recv(&mut buf).unwrap();
    assert_eq!(buf, b"after the intruders");
    a.close().unwrap();
    assert_eq!(
        finish(echo, Instant::now() + DEADLINE, F::NAME)
            .report()
            .messages,
        1
    );
    link.finish();
}

/// Frames a client leaves cut short, before and after the handshake: the
/// server drops that connection alone, counts a client that had put into a
/// queue as lost (its readers learn the writer died, after the items it
/// put), and goes on serving everyone else.
fn manager_survives_frames_cut_short<F: ipcbench::transport::manager::Family>() {
    use ipcbench::transport::manager::{KEY_LEN, Manager, Proxy};
    use ipcbench::transport::stream::StreamIo;
    type M<F> = Manager<F>;
    let link = start::<M<F>>("cut");
    let echo = link.spawn_b(&args!["echo"]);
    let addr = link.ep.addr.split_once(':').unwrap().1.to_owned();
    let key = ipcbench::transport::manager::from_hex(&link.ep.env[0].1).unwrap();
    // Before the handshake: a digest frame that promises KEY_LEN bytes and
    // brings 5, and a header cut after 2 of its 4 bytes.
    for cut in [
        [&(KEY_LEN as u32).to_le_bytes()[..], &[0xAB; 5][..]].concat(),
        vec![KEY_LEN as u8, 0],
    ] {
        let mut raw = F::connect(&addr).unwrap();
        let mut challenge = [0u8; 4 + KEY_LEN];
        let mut got = 0;
        while got < challenge.len() {
            match raw.read(&mut challenge[got..]) {
                Ok(0) => panic!("{}: the server closed before its challenge", F::NAME),
                Ok(n) => got += n,
                Err(e) => panic!("{}: reading the challenge: {e}", F::NAME),
            }
        }
        raw.write(&[std::io::IoSlice::new(&cut)]).unwrap();
        drop(raw);
    }
    // After it: a client puts one item into "cut", then dies in the middle
    // of its next request.
    let mut writer = Proxy::new(F::connect(&addr).unwrap(), &key, 1 << 20).unwrap();
    writer.put(b"cut", b"before the cut").unwrap();
    let mut req = vec![1u8, 3];
    req.extend_from_slice(b"cut");
    req.extend_from_slice(&[0xCD; 100]);
    writer.send_cut(&req, 40).unwrap();
    drop(writer);
    let mut reader = Proxy::new(F::connect(&addr).unwrap(), &key, 1 << 20).unwrap();
    // A hang detector: the server has both answers at once.
    reader.set_timeout(Some(OP_TIMEOUT)).unwrap();
    let mut buf = Vec::new();
    reader.get(b"cut", &mut buf).unwrap();
    assert_eq!(buf, b"before the cut", "{}", F::NAME);
    // Nothing of the cut request was stored: the next answer is the loss.
    let e = reader.get(b"cut", &mut buf).unwrap_err();
    assert!(
        matches!(&e, TransportError::PeerGone(why) if why.contains("died without closing")),
        "{}: a reader of a queue whose writer was cut off must learn it, got {e}",
        F::NAME
    );
    drop(reader);
    the_right_client_still_gets_its_echo(link, echo);
}

macro_rules! extra_tests {
    (zmq_inject, $T:ty) => {
        #[test]
        fn malformed_frames_drop_the_connection_as_zeromq_does() {
            super::zmq_malformed_frames_drop_the_connection::<$T>()
        }
    };
    (inject, $T:ty) => {
        #[test]
        fn malformed_frames_are_clear_errors() {
            super::malformed_frames_are_clear_errors::<$T>()
        }
    };
    (manager $F:ty, $T:ty) => {
        #[test]
        fn wrong_authkey_and_malformed_requests_are_refused_and_serving_goes_on() {
            super::manager_refuses_bad_keys_and_bad_requests::<$F>()
        }
        #[test]
        fn frames_cut_short_drop_that_client_alone() {
            super::manager_survives_frames_cut_short::<$F>()
        }
        #[test]
        fn object_clients_check_every_answer() {
            super::manager_object_clients_check_every_answer::<$F>()
        }
    };
}

macro_rules! conformance {
    ($($(#[$meta:meta])* $variant:ident, $module:ident => $T:ty, $($extra:ident)+ $(: $F:ty)?;)*) => {
        /// Exhaustive: a transport added to the registry but not here does
        /// not compile.
        #[allow(dead_code)]
        fn suite_module(k: TransportKind) -> &'static str {
            match k {
                $($(#[$meta])* TransportKind::$variant => stringify!($module),)*
            }
        }
        $(
        $(#[$meta])*
        mod $module {
            use super::*;
            type T = $T;
            #[test]
            fn messages_of_0b_1b_64kib_16mib_arrive_intact() { messages_of_every_size::<T>() }
            #[test]
            fn stream_of_100k_checked_messages_a_to_b() { stream_a_to_b::<T>() }
            #[test]
            fn stream_of_100k_checked_messages_b_to_a() { stream_b_to_a::<T>() }
            #[test]
            fn orderly_close_is_end_of_stream() { super::orderly_close_is_end_of_stream::<T>() }
            #[test]
            fn killed_peer_is_reported_not_hung() { super::killed_peer_is_reported_not_hung::<T>() }
            extra_tests!($($extra)+ $($F)?, T);
        }
    )*};
}

conformance! {
    ShmRing, shm_ring => ipcbench::transport::shm_ring::ShmRing, inject;
    ShmPipe, shm_pipe => ipcbench::transport::shm_pipe::ShmPipe, inject;
    ShmQueue, shm_queue => ipcbench::transport::shm_queue::ShmQueue, inject;
    OsPipe, os_pipe => ipcbench::transport::os_pipe::OsPipe, inject;
    UnixStream, unix_stream => ipcbench::transport::unix_stream::UnixStreamTransport, inject;
    UnixSeqpacket, unix_seqpacket => ipcbench::transport::unix_seqpacket::UnixSeqpacket, inject;
    Tcp, tcp => ipcbench::transport::tcp::Tcp, inject;
    RawSync, raw_sync => ipcbench::transport::raw_sync::RawSync, inject;
    ManagerUnix, manager_unix => ipcbench::transport::manager::ManagerUnix, manager: ipcbench::transport::manager::UnixFamily;
    ManagerTcp, manager_tcp => ipcbench::transport::manager::ManagerTcp, manager: ipcbench::transport::manager::TcpFamily;
    #[cfg(feature = "iceoryx2")]
    Iceoryx2, iceoryx2 => ipcbench::transport::iceoryx2::Iceoryx2, inject;
    #[cfg(feature = "zeromq")]
    ZmqIpc, zmq_ipc => ipcbench::transport::zmq::ZmqIpc, zmq_inject;
    #[cfg(feature = "zeromq")]
    ZmqTcp, zmq_tcp => ipcbench::transport::zmq::ZmqTcp, zmq_inject;
}

#[test]
fn registry_names_match_the_transports_and_list_prints_them() {
    let mut names: Vec<&str> = TransportKind::ALL
        .iter()
        .map(|k| ipcbench::with_transport!(*k, T => { assert_eq!(T::NAME, k.name()); T::NAME }))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), TransportKind::ALL.len());
    let out = std::process::Command::new(bin())
        .arg("list")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    for k in TransportKind::ALL {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(k.name())),
            "`ipcbench list` misses {k}"
        );
    }
}

/// Any local process can connect to a loopback port: strangers who connect
/// before side B (one silent, one with a wrong token, one sending frames)
/// are dropped, and side B's connection, which presents the link's token,
/// is the one side A gets.
#[test]
fn tcp_drops_strangers_who_connect_first() {
    use ipcbench::transport::tcp::Tcp;
    use std::io::Write;
    let mut link = start::<Tcp>("strangers");
    // tcp:FD:IP:PORT
    let sockaddr = link.ep.addr.splitn(3, ':').nth(2).unwrap().to_owned();
    let _silent = std::net::TcpStream::connect(&sockaddr).unwrap();
    let mut wrong = std::net::TcpStream::connect(&sockaddr).unwrap();
    wrong.write_all(&[0u8; 16]).unwrap();
    let mut framer = std::net::TcpStream::connect(&sockaddr).unwrap();
    framer.write_all(&4u32.to_le_bytes()).unwrap();
    framer.write_all(b"evil").unwrap();
    let echo = link.spawn_b(&args!["echo", "--count", 1]);
    let mut a = link.connect_a();
    let mut buf = Vec::new();
    a.send(b"only").unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 4);
    assert_eq!(buf, b"only");
    assert_eq!(
        finish(echo, Instant::now() + DEADLINE, "tcp")
            .report()
            .messages,
        1
    );
    drop(a);
    link.finish();
}

/// `zmq-tcp`'s port is open to every local process too: strangers who
/// connect first (one silent, one speaking ZeroMQ with a wrong token, one
/// with no authentication at all) never take the `PAIR`'s one peer, and
/// side B, which presents the link's token, is the one side A talks to.
/// Strangers who come and go once the link is up (their connections drop
/// as a dead peer's does) do not end it.
#[cfg(feature = "zeromq")]
#[test]
fn zmq_tcp_lets_in_only_the_links_token() {
    use ipcbench::transport::zmq::ZmqTcp;
    let mut link = start::<ZmqTcp>("strangers");
    // zmq-tcp:FD:IP:PORT
    let sockaddr = link.ep.addr.splitn(3, ':').nth(2).unwrap().to_owned();
    let _silent = std::net::TcpStream::connect(&sockaddr).unwrap();
    let ctx = zmq::Context::new();
    // Linger 0 from the start: a stranger's unsent message must not hold
    // the context's end (and the test) when an assertion below fails.
    let wrong = ctx.socket(zmq::PAIR).unwrap();
    wrong.set_linger(0).unwrap();
    wrong.set_plain_username(Some("ipcbench")).unwrap();
    wrong.set_plain_password(Some(&"0".repeat(32))).unwrap();
    wrong.connect(&format!("tcp://{sockaddr}")).unwrap();
    wrong.send("from a stranger", zmq::DONTWAIT).unwrap();
    let open = ctx.socket(zmq::PAIR).unwrap();
    open.set_linger(0).unwrap();
    open.connect(&format!("tcp://{sockaddr}")).unwrap();
    open.send("from another", zmq::DONTWAIT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let echo = link.spawn_b(&args!["echo", "--count", 1]);
    let mut a = link.connect_a();
    // Strangers once the link is up: garbage, then gone; a wrong token.
    {
        use std::io::Write;
        let mut garbage = std::net::TcpStream::connect(&sockaddr).unwrap();
        garbage.write_all(&[0xffu8; 64]).unwrap();
    }
    let late = ctx.socket(zmq::PAIR).unwrap();
    late.set_linger(0).unwrap();
    late.set_plain_username(Some("ipcbench")).unwrap();
    late.set_plain_password(Some(&"1".repeat(32))).unwrap();
    late.connect(&format!("tcp://{sockaddr}")).unwrap();
    // Their drops reach side A's monitor before it sends.
    std::thread::sleep(Duration::from_millis(300));
    drop(late);
    let mut buf = Vec::new();
    a.send(b"only").unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 4);
    assert_eq!(buf, b"only");
    // Side B's close waits for side A to take it.
    assert!(matches!(a.recv(&mut buf), Err(TransportError::Closed)));
    drop(a);
    assert_eq!(
        finish(echo, Instant::now() + DEADLINE, "zmq-tcp")
            .report()
            .messages,
        1
    );
    drop((wrong, open));
    link.finish();
}

/// A link of `T` over 64 KiB buffers for messages of up to 200,000
/// bytes (past the ring's largest frame), its sides connected side by
/// side (a side may wait for the other to be there); the setup is kept
/// for as long as the link is used.
fn side_by_side<T: Transport>(label: &str) -> (T::Setup, T::Conn, T::Conn) {
    let opts = LinkOpts {
        capacity: 64 << 10,
        max_message: 200_000,
        label: format!("{label}-{}", T::NAME),
        ..LinkOpts::default()
    };
    let (setup, ep) = T::setup(&opts).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| T::connect(&ep, Side::B, &opts).unwrap());
        (T::connect(&ep, Side::A, &opts).unwrap(), b.join().unwrap())
    });
    (setup, a, b)
}

/// `recv_with` hands the same messages as `recv`: in place for the ring's
/// one-frame messages, the queue's one-slot items and iceoryx2's samples,
/// put together for fragmented ones.
#[test]
fn recv_with_sees_what_recv_sees_whole_or_fragmented() {
    use ipcbench::transport::shm_pipe::ShmPipe;
    use ipcbench::transport::shm_ring::ShmRing;
    fn check<T: Transport>() {
        let (_setup, mut a, mut b) = side_by_side::<T>("recvwith");
        // Past the ring's largest frame (half its capacity): fragmented.
        let sizes = [0usize, 1, 64, 40_000, 150_000, 7];
        let sender = std::thread::spawn(move || {
            for (i, n) in sizes.iter().enumerate() {
                a.send(&message(i as u64, *n)).unwrap();
            }
            // Its close may wait until the receiver took everything.
            a.close().unwrap();
        });
        let mut buf = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let same = b
                .recv_with(&mut buf, |m| m == message(i as u64, *n).as_slice())
                .unwrap();
            assert!(same, "{}: message {i} of {n} bytes differs", T::NAME);
        }
        assert!(matches!(
            b.recv_with(&mut buf, |m| m.len()),
            Err(TransportError::Closed)
        ));
        sender.join().unwrap();
    }
    check::<ShmRing>();
    check::<ShmPipe>();
    // In place in the queue's slot.
    check::<ipcbench::transport::shm_queue::ShmQueue>();
    // In place in iceoryx2's shared memory.
    #[cfg(feature = "iceoryx2")]
    {
        let _alone = UNLABELLED.lock().unwrap_or_else(|e| e.into_inner());
        check::<ipcbench::transport::iceoryx2::Iceoryx2>();
    }
}

/// `echo_with` sends back exactly what it received and its check passed
/// (from the inbound ring straight into the outbound one for the ring's
/// one-frame messages, from the received sample for iceoryx2, through
/// `buf` for fragmented ones and elsewhere), and sends nothing its check
/// refused: the refusal comes back inside, the link goes on.
#[test]
fn echo_with_sends_back_what_it_checked_and_nothing_it_refused() {
    use ipcbench::transport::shm_pipe::ShmPipe;
    use ipcbench::transport::shm_ring::ShmRing;
    fn check<T: Transport>() {
        let (_setup, mut a, mut b) = side_by_side::<T>("echowith");
        // Past the ring's largest frame (half its capacity): fragmented.
        let sizes = [0usize, 1, 64, 40_000, 150_000, 7];
        const REFUSED: usize = 3;
        let echo = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let r = b
                    .echo_with(&mut buf, |m| {
                        assert_eq!(m, message(i as u64, *n).as_slice(), "message {i}");
                        if i == REFUSED { Err(i) } else { Ok(m.len()) }
                    })
                    .unwrap();
                assert_eq!(r, if i == REFUSED { Err(i) } else { Ok(*n) });
            }
            assert!(matches!(
                b.echo_with(&mut buf, |_| Ok::<_, ()>(())),
                Err(TransportError::Closed)
            ));
            b.close().unwrap();
        });
        let mut buf = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            a.send(&message(i as u64, *n)).unwrap();
            if i == REFUSED {
                continue;
            }
            let got = a.recv(&mut buf).unwrap();
            assert_eq!(got, *n, "{}: echo of message {i}", T::NAME);
            assert_eq!(
                buf,
                message(i as u64, *n),
                "{}: echo of message {i}",
                T::NAME
            );
        }
        a.close().unwrap();
        echo.join().unwrap();
    }
    check::<ShmRing>();
    check::<ShmPipe>();
    #[cfg(feature = "iceoryx2")]
    {
        let _alone = UNLABELLED.lock().unwrap_or_else(|e| e.into_inner());
        check::<ipcbench::transport::iceoryx2::Iceoryx2>();
    }
}

/// A send or a receive that times out in the middle of a message cut into
/// frames (shm-ring, shm-pipe, shm-queue) neither loses nor glues: the
/// receive keeps what it read and the next one goes on with it; the send
/// leaves the link unable to send, saying why, every time.
#[test]
fn a_timeout_in_the_middle_of_a_message_loses_nothing_and_glues_nothing() {
    use ipcbench::transport::shm_pipe::ShmPipe;
    use ipcbench::transport::shm_queue::ShmQueue;
    use ipcbench::transport::shm_ring::ShmRing;
    // (capacity, limit, a message of several frames): a ring's frame is
    // half its room; a queue's item at most 1 MiB.
    fn check<T: Transport>(capacity: usize, max_message: usize, big: usize) {
        let opts = LinkOpts {
            capacity,
            max_message,
            label: format!("midmsg-{}", T::NAME),
            ..LinkOpts::default()
        };
        // Sending: nobody reads, so the room fills part-way through.
        let (setup, ep) = T::setup(&opts).unwrap();
        let mut a = T::connect(&ep, Side::A, &opts).unwrap();
        let mut b = T::connect(&ep, Side::B, &opts).unwrap();
        a.set_timeout(Some(Duration::from_millis(20))).unwrap();
        for attempt in ["the message cut off", "the next message"] {
            match a.send(&message(0, big)) {
                Err(TransportError::Broken(why)) => {
                    assert!(why.contains("timed out after"), "{}: {why}", T::NAME)
                }
                r => panic!("{}: {attempt}: {r:?} where the link is broken", T::NAME),
            }
        }
        // The receiver reads what went out, waits for the rest, and keeps
        // it; when the sender goes, the message is truncated, not glued.
        b.set_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = Vec::new();
        assert!(
            matches!(b.recv(&mut buf), Err(TransportError::Timeout)),
            "{}",
            T::NAME
        );
        drop(a);
        match b.recv(&mut buf) {
            Err(TransportError::PeerGone(why)) => assert!(why.contains("truncated"), "{why}"),
            r => panic!("{}: {r:?} after a message cut off", T::NAME),
        }
        drop((b, setup));

        // Receiving: timeouts short enough to strike between frames, every
        // message still whole, in order, each once.
        let (_setup, ep) = T::setup(&opts).unwrap();
        let mut a = T::connect(&ep, Side::A, &opts).unwrap();
        let mut b = T::connect(&ep, Side::B, &opts).unwrap();
        const N: u64 = 40;
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                a.send(&message(i, big - i as usize)).unwrap();
            }
            a
        });
        b.set_timeout(Some(Duration::from_micros(1))).unwrap();
        let (mut timeouts, mut i) = (0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(60);
        while i < N {
            assert!(
                Instant::now() < deadline,
                "{}: hung at message {i}",
                T::NAME
            );
            match b.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, big - i as usize, "{}: message {i}'s length", T::NAME);
                    assert!(
                        buf == message(i, big - i as usize),
                        "{}: message {i} differs",
                        T::NAME
                    );
                    i += 1;
                }
                Err(TransportError::Timeout) => timeouts += 1,
                Err(e) => panic!("{}: message {i}: {e}", T::NAME),
            }
        }
        drop(sender.join().unwrap());
        eprintln!("{}: {N} messages whole across {timeouts} timeouts", T::NAME);
    }
    check::<ShmRing>(64 << 10, 200_000, 150_000);
    check::<ShmPipe>(64 << 10, 200_000, 150_000);
    check::<ShmQueue>(2 << 20, 5 << 20, (5 << 20) - 100);
}

/// A manager's server serves while its starter holds its standard input
/// open, and ends when it closes: a server on another host ends when the
/// link to it drops (ssh closes its input), never lingering for a day.
#[test]
fn a_manager_server_ends_when_its_input_closes() {
    let (mut server, addr) = ipcbench::transport::manager::start_server(
        std::path::Path::new(bin()),
        None,
        "tcp:127.0.0.1:0",
        &[7u8; 32],
        1 << 10,
        &[],
    )
    .unwrap();
    assert!(addr.starts_with("manager-tcp:127.0.0.1:"), "{addr}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.try_wait().unwrap().is_none(), "it serves");
    drop(server.stdin.take());
    let until = Instant::now() + HANG;
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the server outlived its input");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
