//! The manager's server: the objects it owns (named queues, a dictionary,
//! a lock, a counter, named lists, a namespace's attributes and typed
//! `Value('d')`s), one thread per connection, each request answered in
//! turn after the handshake.

use crate::shm::sync::{AtomicU64, Ordering};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::super::fd::chmod_owner_only;
use super::super::stream::{StreamConn, StreamIo};
use super::super::{Conn, TransportError};
use super::{HANDSHAKE_MAX, HANDSHAKE_TIMEOUT, op, server_handshake, status};

#[derive(Default)]
struct ServerQueue {
    items: VecDeque<Vec<u8>>,
    closed: bool,
    /// Connections that put into this queue.
    writers: HashSet<u64>,
    /// A writer's connection ended without closing.
    writer_lost: bool,
}

#[derive(Default)]
struct Objects {
    queues: HashMap<Vec<u8>, ServerQueue>,
    dict: HashMap<Vec<u8>, Vec<u8>>,
    lock_holder: Option<u64>,
    counter: i64,
    /// `manager.list()`s, by name.
    lists: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// A `manager.Namespace()`'s attributes.
    namespace: HashMap<Vec<u8>, Vec<u8>>,
    /// `manager.Value('d', …)`s, by name.
    values: HashMap<Vec<u8>, [u8; 8]>,
}

/// What the server owns.
#[derive(Default)]
struct State {
    objects: Mutex<Objects>,
    changed: Condvar,
}

/// Handles `requests` in order, as the server does for one connection, and
/// returns the replies; requests that would wait are made not to (a get
/// waits 0 ms, a lock this connection holds is not taken again). For
/// fuzzing the protocol without sockets (the targets in `fuzz/`).
#[doc(hidden)]
pub fn handle_requests_for_fuzzing(requests: &[&[u8]]) -> Vec<Vec<u8>> {
    let state = State::default();
    let mut held = false;
    let mut out = Vec::new();
    requests
        .iter()
        .map(|req| {
            let mut r = req.to_vec();
            let code = r.first().copied();
            if code == Some(op::GET) {
                // [op][name length][name][wait in ms: u32]: wait 0 ms.
                let payload_at = 2 + r.get(1).copied().unwrap_or(0) as usize;
                if r.len() == payload_at + 4 {
                    r[payload_at..].copy_from_slice(&0u32.to_le_bytes());
                }
            }
            if code == Some(op::LOCK_ACQUIRE) && held {
                return Vec::new();
            }
            state.handle(0, &r, &mut out);
            if out.first() == Some(&status::OK) {
                match code {
                    Some(op::LOCK_ACQUIRE) => held = true,
                    Some(op::LOCK_RELEASE) => held = false,
                    _ => {}
                }
            }
            out.clone()
        })
        .collect()
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A handler that panicked cannot leave the objects half-changed in a
        // way that matters here; keep serving.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one request from connection `id`; writes the reply into `out`.
    fn handle(&self, id: u64, req: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let Some((&code, rest)) = req.split_first() else {
            return error(out, "empty request");
        };
        let Some((&name_len, rest)) = rest.split_first() else {
            return error(out, "request without a name");
        };
        let Some((name, payload)) = rest.split_at_checked(name_len as usize) else {
            return error(out, "name runs past the request");
        };
        match code {
            op::PUT => {
                let mut o = self.lock();
                let q = o.queues.entry(name.to_vec()).or_default();
                if q.closed {
                    out.push(status::CLOSED);
                    return;
                }
                q.writers.insert(id);
                q.items.push_back(payload.to_vec());
                drop(o);
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::GET => {
                let Ok(ms) = <[u8; 4]>::try_from(payload) else {
                    return error(out, "GET takes a 4-byte timeout");
                };
                let ms = u32::from_le_bytes(ms);
                let deadline =
                    (ms != u32::MAX).then(|| Instant::now() + Duration::from_millis(ms.into()));
                let mut o = self.lock();
                loop {
                    let q = o.queues.entry(name.to_vec()).or_default();
                    if let Some(item) = q.items.pop_front() {
                        out.push(status::OK);
                        out.extend_from_slice(&item);
                        return;
                    }
                    if q.closed {
                        return out.push(status::CLOSED);
                    }
                    if q.writer_lost {
                        return out.push(status::PEER_GONE);
                    }
                    o = match deadline {
                        None => self.changed.wait(o).unwrap_or_else(|p| p.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return out.push(status::EMPTY);
                            }
                            self.changed
                                .wait_timeout(o, left)
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                    };
                }
            }
            op::CLOSE_QUEUE => {
                self.lock().queues.entry(name.to_vec()).or_default().closed = true;
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::DICT_SET => {
                self.lock().dict.insert(name.to_vec(), payload.to_vec());
                out.push(status::OK);
            }
            op::DICT_GET => match self.lock().dict.get(name) {
                Some(v) => {
                    out.push(status::OK);
                    out.extend_from_slice(v);
                }
                None => out.push(status::MISSING),
            },
            op::LOCK_ACQUIRE => {
                let mut o = self.lock();
                while o.lock_holder.is_some() {
                    o = self.changed.wait(o).unwrap_or_else(|p| p.into_inner());
                }
                o.lock_holder = Some(id);
                out.push(status::OK);
            }
            op::LOCK_RELEASE => {
                let mut o = self.lock();
                if o.lock_holder.take().is_none() {
                    return error(out, "release of an unlocked lock");
                }
                drop(o);
                self.changed.notify_all();
                out.push(status::OK);
            }
            op::COUNTER_ADD => {
                let Ok(n) = <[u8; 8]>::try_from(payload) else {
                    return error(out, "COUNTER_ADD takes an 8-byte amount");
                };
                let mut o = self.lock();
                o.counter = o.counter.wrapping_add(i64::from_le_bytes(n));
                out.push(status::OK);
                out.extend_from_slice(&o.counter.to_le_bytes());
            }
            op::LIST_APPEND => {
                let mut o = self.lock();
                let l = o.lists.entry(name.to_vec()).or_default();
                l.push(payload.to_vec());
                let len = l.len() as u64;
                out.push(status::OK);
                out.extend_from_slice(&len.to_le_bytes());
            }
            op::LIST_GET => {
                let Ok(i) = <[u8; 8]>::try_from(payload) else {
                    return error(out, "LIST_GET takes an 8-byte index");
                };
                let i = i64::from_le_bytes(i);
                let o = self.lock();
                let l = o.lists.get(name).map_or(&[][..], Vec::as_slice);
                // A negative index counts from the end, as Python's does.
                let at = if i < 0 {
                    l.len().checked_sub(i.unsigned_abs() as usize)
                } else {
                    Some(i as usize).filter(|&i| i < l.len())
                };
                match at {
                    Some(at) => {
                        out.push(status::OK);
                        out.extend_from_slice(&l[at]);
                    }
                    None => error(
                        out,
                        &format!("list index {i} out of range ({} items)", l.len()),
                    ),
                }
            }
            op::NS_SET => {
                self.lock()
                    .namespace
                    .insert(name.to_vec(), payload.to_vec());
                out.push(status::OK);
            }
            op::NS_GET => match self.lock().namespace.get(name) {
                Some(v) => {
                    out.push(status::OK);
                    out.extend_from_slice(v);
                }
                None => out.push(status::MISSING),
            },
            op::VALUE_SET => {
                let Ok(v) = <[u8; 8]>::try_from(payload) else {
                    return error(out, "VALUE_SET takes an 8-byte double");
                };
                self.lock().values.insert(name.to_vec(), v);
                out.push(status::OK);
            }
            op::VALUE_GET => match self.lock().values.get(name) {
                Some(v) => {
                    out.push(status::OK);
                    out.extend_from_slice(v);
                }
                None => out.push(status::MISSING),
            },
            other => error(out, &format!("unknown request code {other}")),
        }
    }

    /// Connection `id` ended; `orderly` if it closed in order.
    fn disconnected(&self, id: u64, orderly: bool) {
        let mut o = self.lock();
        if !orderly {
            for q in o.queues.values_mut() {
                if q.writers.contains(&id) && !q.closed {
                    q.writer_lost = true;
                }
            }
        }
        if o.lock_holder == Some(id) {
            o.lock_holder = None;
        }
        drop(o);
        self.changed.notify_all();
    }
}

fn error(out: &mut Vec<u8>, why: &str) {
    out.clear();
    out.push(status::ERROR);
    out.extend_from_slice(why.as_bytes());
}

fn serve_conn<S: StreamIo>(stream: S, state: &State, key: &[u8], id: u64, max: usize) {
    let mut conn = StreamConn::new(stream, HANDSHAKE_MAX);
    let _ = conn.set_timeout(Some(HANDSHAKE_TIMEOUT));
    if server_handshake(&mut conn, key).is_err() {
        // Refused: nothing more is said on this connection.
        return;
    }
    let mut conn = conn.with_max(max);
    let _ = conn.set_timeout(None);
    let (mut req, mut reply) = (Vec::new(), Vec::new());
    loop {
        match conn.recv(&mut req) {
            Ok(_) => {
                state.handle(id, &req, &mut reply);
                if conn.send(&reply).is_err() {
                    state.disconnected(id, false);
                    return;
                }
            }
            Err(TransportError::Closed) => return state.disconnected(id, true),
            Err(_) => return state.disconnected(id, false),
        }
    }
}

/// Runs a manager server on `listen` (`unix:PATH` or `tcp:IP:PORT`, port 0
/// for any), printing `ready ADDR` once it accepts connections. Serves until
/// the process is killed.
pub fn serve(listen: &str, key: &[u8], max: usize) -> Result<(), TransportError> {
    let state = Arc::new(State::default());
    let key: Arc<[u8]> = key.into();
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    if let Some(path) = listen.strip_prefix("unix:") {
        let l = UnixListener::bind(path)
            .map_err(|e| TransportError::io(format!("binding {path}"), e))?;
        chmod_owner_only(path.as_ref())?;
        println!("ready manager-unix:{path}");
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (state, key) = (state.clone(), key.clone());
            // Relaxed: only uniqueness matters.
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || serve_conn(s, &state, &key, id, max));
        }
    } else if let Some(addr) = listen.strip_prefix("tcp:") {
        let l = TcpListener::bind(addr)
            .map_err(|e| TransportError::io(format!("binding {addr}"), e))?;
        let local = l
            .local_addr()
            .map_err(|e| TransportError::io("reading the port", e))?;
        println!("ready manager-tcp:{local}");
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let _ = s.set_nodelay(true);
            let (state, key) = (state.clone(), key.clone());
            // Relaxed: only uniqueness matters.
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || serve_conn(s, &state, &key, id, max));
        }
    } else {
        return Err(TransportError::Setup(format!(
            "`{listen}` is neither unix:PATH nor tcp:IP:PORT"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Client.

#[cfg(test)]
mod fuzz {
    //! The request handler fed 100 000 generated requests (known and
    //! unknown codes, names running past the request, payloads of the
    //! wrong size): no panic, every reply one of the status codes, errors
    //! say what was wrong, and what was stored reads back.
    use super::*;
    use crate::harness::validate::mix64;

    #[test]
    fn the_request_handler_survives_generated_requests() {
        let state = State::default();
        let mut seed = 0x5eed_u64;
        let mut next = || {
            seed = seed.wrapping_add(1);
            mix64(seed)
        };
        let (mut dict, mut counter, mut locked) = (HashMap::new(), 0i64, false);
        let (mut lists, mut ns, mut values) = (
            HashMap::<Vec<u8>, Vec<Vec<u8>>>::new(),
            HashMap::new(),
            HashMap::new(),
        );
        let (mut out, mut errors) = (Vec::new(), 0u64);
        for case in 0..100_000u64 {
            let code = (next() % 17) as u8;
            let name: Vec<u8> = (0..next() % 4).map(|_| b'a' + (next() % 3) as u8).collect();
            let mut payload: Vec<u8> = (0..next() % 24).map(|_| next() as u8).collect();
            // Blocking requests would wait for ever on one thread: GET waits
            // at most 0 ms, and the lock is only taken while free.
            if code == op::GET && next() % 4 != 0 {
                payload = 0u32.to_le_bytes().to_vec();
            }
            if code == op::GET
                && payload.len() == 4
                && u32::from_le_bytes(payload[..4].try_into().unwrap()) > 0
            {
                payload = 0u32.to_le_bytes().to_vec();
            }
            // Indices near the ends and doubles of the right size, often.
            if code == op::LIST_GET && next() % 2 == 0 {
                payload = ((next() % 6) as i64 - 3).to_le_bytes().to_vec();
            }
            if code == op::VALUE_SET && next() % 2 == 0 {
                payload = (next() as f64).to_le_bytes().to_vec();
            }
            if code == op::LOCK_ACQUIRE && locked {
                continue;
            }
            let mut req = vec![code];
            // Sometimes a name length that runs past the request.
            let claimed = if next() % 8 == 0 {
                (name.len() + payload.len() + 1 + (next() % 10) as usize).min(255)
            } else {
                name.len()
            };
            req.push(claimed as u8);
            req.extend_from_slice(&name);
            req.extend_from_slice(&payload);
            if next() % 50 == 0 {
                req.truncate((next() % 2) as usize);
            }
            state.handle(case % 5, &req, &mut out);
            let status = *out.first().expect("every request gets a reply");
            assert!(status <= status::ERROR, "case {case}: status {status}");
            assert!(
                out.len() <= 1 + 64 + 24,
                "case {case}: a {}-byte reply",
                out.len()
            );
            if status == status::ERROR {
                errors += 1;
                assert!(out.len() > 1, "case {case}: an error must say why");
                continue;
            }
            let well_formed = req.len() >= 2 && claimed == name.len();
            assert!(
                well_formed || code > op::VALUE_GET,
                "case {case}: bad request accepted"
            );
            match code {
                op::DICT_SET => {
                    dict.insert(name.clone(), payload.clone());
                }
                op::DICT_GET => match dict.get(&name) {
                    Some(v) => assert_eq!(&out[1..], &v[..], "case {case}"),
                    None => assert_eq!(status, status::MISSING, "case {case}"),
                },
                op::COUNTER_ADD => {
                    counter =
                        counter.wrapping_add(i64::from_le_bytes(payload[..8].try_into().unwrap()));
                    assert_eq!(out[1..], counter.to_le_bytes(), "case {case}");
                }
                op::LOCK_ACQUIRE => locked = true,
                op::LOCK_RELEASE => locked = false,
                op::LIST_APPEND => {
                    let l = lists.entry(name.clone()).or_default();
                    l.push(payload.clone());
                    assert_eq!(out[1..], (l.len() as u64).to_le_bytes(), "case {case}");
                }
                op::LIST_GET => {
                    let i = i64::from_le_bytes(payload[..8].try_into().unwrap());
                    let l = lists.get(&name).map_or(&[][..], Vec::as_slice);
                    let at = if i < 0 { l.len() as i64 + i } else { i };
                    assert_eq!(&out[1..], &l[at as usize][..], "case {case}");
                }
                op::NS_SET => {
                    ns.insert(name.clone(), payload.clone());
                }
                op::NS_GET => match ns.get(&name) {
                    Some(v) => assert_eq!(&out[1..], &v[..], "case {case}"),
                    None => assert_eq!(status, status::MISSING, "case {case}"),
                },
                op::VALUE_SET => {
                    values.insert(name.clone(), payload.clone());
                }
                op::VALUE_GET => match values.get(&name) {
                    Some(v) => assert_eq!(&out[1..], &v[..], "case {case}"),
                    None => assert_eq!(status, status::MISSING, "case {case}"),
                },
                _ => {}
            }
        }
        assert!(
            errors > 10_000,
            "the generator must reach the error paths ({errors})"
        );
    }
}
