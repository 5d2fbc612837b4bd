//! `reqrep` over shared memory: a server process owns a dictionary, as a
//! Manager's server does, and N clients call it through the core's queues.
//!
//! One request queue is shared by every client (N producers, one consumer:
//! the server); each client has a reply queue of its own. A request is a
//! header — the client's number (u32), the operation (u16), the key's
//! length (u16), little-endian — then the key, then the value. A reply is a
//! status byte, then the value read. The server answers every request it
//! can parse and ends when the coordinator closes the request queue; it
//! reports how many calls it served, which the coordinator compares with
//! what the clients made.
//!
//! The same dictionary, requests and replies serve ZeroMQ's reqrep, over a
//! `ROUTER` and the clients' `REQ` sockets ([`Requests`], [`Call`]).

use std::collections::HashMap;

use super::child::bodies::ObjectCalls;
use super::control::PeerReport;
use super::measure::cpu_time_ns;
use super::validate::now_ns;
use crate::shm::{Queue, QueueError, Wait, unique_name};

/// The address prefix of a shared-memory dictionary.
pub const PREFIX: &str = "shm-dict:";
/// Bytes of a request's header.
const HEADER: usize = 8;
/// The longest key.
pub const MAX_KEY: usize = 64;
/// Bytes a request may carry beyond its value: the header and the key.
pub const REQUEST_OVERHEAD: usize = HEADER + MAX_KEY;

const OP_SET: u16 = 1;
const OP_GET: u16 = 2;

const OK: u8 = 0;
const MISSING: u8 = 1;
const BAD_REQUEST: u8 = 2;

/// The queues of one point, owned by the coordinator (unlinked on drop).
pub struct Setup {
    requests: Queue,
    _replies: Vec<Queue>,
    /// What peers are given to find the queues.
    pub addr: String,
}

impl Setup {
    /// Creates the request queue and `clients` reply queues for values of
    /// up to `max_value` bytes.
    pub fn create(clients: usize, max_value: usize, wait: Wait) -> Result<Setup, String> {
        if clients == 0 || clients > crate::shm::queue::MAX_PEERS - 1 {
            return Err(format!(
                "a shared-memory dictionary serves 1 to {} clients",
                crate::shm::queue::MAX_PEERS - 1
            ));
        }
        let e = |e: QueueError| format!("creating the dictionary's queues: {e}");
        let req_name = unique_name("dict-req");
        // Room for every client's one outstanding request.
        let depth = (clients * 2).next_power_of_two().max(2);
        let requests =
            Queue::create(&req_name, depth, HEADER + MAX_KEY + max_value, wait).map_err(e)?;
        let mut names = vec![req_name];
        let mut replies = Vec::with_capacity(clients);
        for i in 0..clients {
            let name = unique_name(&format!("dict-rep{i}"));
            replies.push(Queue::create(&name, 2, 1 + max_value, wait).map_err(e)?);
            names.push(name);
        }
        Ok(Setup {
            requests,
            _replies: replies,
            addr: format!("{PREFIX}{}", names.join(",")),
        })
    }

    /// Ends the server: it drains what is queued, then stops.
    pub fn close(&self) {
        self.requests.close();
    }
}

/// The queue names in an address: the request queue, then the replies.
fn names(addr: &str) -> Result<(&str, Vec<&str>), String> {
    let rest = addr
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("`{addr}` is not a shared-memory dictionary's address"))?;
    let mut it = rest.split(',');
    let req = it
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("no request queue")?;
    let reps: Vec<&str> = it.collect();
    if reps.is_empty() {
        return Err("no reply queues".into());
    }
    Ok((req, reps))
}

fn qerr(what: &str) -> impl Fn(QueueError) -> String + '_ {
    move |e| match e {
        QueueError::PeerGone(p) => format!("{what}: process {} died while using it", p.pid),
        e => format!("{what}: {e}"),
    }
}

/// The server's queues.
struct Served {
    requests: Queue,
    replies: Vec<Queue>,
}

impl Served {
    fn open(addr: &str) -> Result<Served, String> {
        let (req, reps) = names(addr)?;
        Ok(Served {
            requests: Queue::open(req).map_err(qerr("opening the request queue"))?,
            replies: reps
                .iter()
                .map(|n| Queue::open(n).map_err(qerr("opening a reply queue")))
                .collect::<Result<Vec<_>, _>>()?,
        })
    }
}

/// Where a dictionary's server takes requests from and sends replies to.
pub trait Requests {
    /// The next request into `buf`; false once the coordinator ended the
    /// service.
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, String>;
    /// Answers the request read last, from client `client` by its header.
    fn reply(&mut self, client: usize, reply: &[u8]) -> Result<(), String>;
}

impl Requests for Served {
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        match self.requests.get(buf, None) {
            Ok(_) => Ok(true),
            Err(QueueError::Closed) => Ok(false),
            Err(e) => Err(qerr("reading a request")(e)),
        }
    }

    fn reply(&mut self, client: usize, reply: &[u8]) -> Result<(), String> {
        let rq = self.replies.get(client).ok_or_else(|| {
            format!(
                "a request from client {client}, but there are {} clients",
                self.replies.len()
            )
        })?;
        rq.put(reply, None).map_err(qerr("replying"))
    }
}

#[cfg(feature = "zeromq")]
impl Requests for crate::transport::zmq::CallServer {
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        crate::transport::zmq::CallServer::next(self, buf)
            .map_err(|e| format!("reading a request: {e}"))
    }

    /// The `ROUTER` answers by the identity it read, not the header's number.
    fn reply(&mut self, _: usize, reply: &[u8]) -> Result<(), String> {
        self.answer(reply).map_err(|e| format!("replying: {e}"))
    }
}

/// Answers requests until the service is ended: the calls served and the
/// times of the first and the last.
fn answer<R: Requests>(r: &mut R) -> Result<(u64, u64, u64), String> {
    let mut dict: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut buf = Vec::new();
    let mut reply = Vec::new();
    let (mut served, mut first, mut last) = (0u64, 0u64, 0u64);
    loop {
        if !r.next(&mut buf)? {
            return Ok((served, first, last));
        }
        if served == 0 {
            first = now_ns();
        }
        let (client, status) = handle(&buf, &mut dict, &mut reply);
        let client =
            client.ok_or_else(|| format!("a request of {} bytes names no client", buf.len()))?;
        if status == BAD_REQUEST {
            // Said to the client too, which fails its point with it.
            let _ = r.reply(client, &reply);
            return Err(format!(
                "client {client} sent a bad request: {}",
                String::from_utf8_lossy(&reply[1..])
            ));
        }
        r.reply(client, &reply)?;
        served += 1;
        last = now_ns();
    }
}

/// The server: answers requests until the request queue is closed.
pub fn serve(addr: &str) -> Result<PeerReport, String> {
    serve_from(Served::open(addr)?)
}

/// The server, taking its requests from `requests`, until the service is
/// ended.
pub fn serve_from<R: Requests>(mut requests: R) -> Result<PeerReport, String> {
    super::control::barrier()?;
    let cpu0 = cpu_time_ns();
    let (calls, first, last) = answer(&mut requests)?;
    Ok(PeerReport {
        messages: calls,
        elapsed_ns: last.saturating_sub(first),
        cpu_ns: cpu_time_ns() - cpu0,
        first_ns: first,
        last_ns: last,
        ..PeerReport::default()
    })
}

/// Handles one request into `reply`: the client it came from (if the
/// header says) and the status.
fn handle(
    req: &[u8],
    dict: &mut HashMap<Vec<u8>, Vec<u8>>,
    reply: &mut Vec<u8>,
) -> (Option<usize>, u8) {
    reply.clear();
    let Some(head) = req.get(..HEADER) else {
        return (None, BAD_REQUEST);
    };
    let client = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let op = u16::from_le_bytes([head[4], head[5]]);
    let klen = u16::from_le_bytes([head[6], head[7]]) as usize;
    let bad = |reply: &mut Vec<u8>, why: &str| {
        reply.push(BAD_REQUEST);
        reply.extend_from_slice(why.as_bytes());
        (Some(client), BAD_REQUEST)
    };
    let Some(key) = req.get(HEADER..HEADER + klen).filter(|_| klen <= MAX_KEY) else {
        return bad(reply, "the key runs past the request or the key limit");
    };
    let value = &req[HEADER + klen..];
    match op {
        OP_SET => {
            match dict.get_mut(key) {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(value);
                }
                None => {
                    dict.insert(key.to_vec(), value.to_vec());
                }
            }
            reply.push(OK);
            (Some(client), OK)
        }
        OP_GET if value.is_empty() => match dict.get(key) {
            Some(v) => {
                reply.push(OK);
                reply.extend_from_slice(v);
                (Some(client), OK)
            }
            None => {
                reply.push(MISSING);
                (Some(client), MISSING)
            }
        },
        OP_GET => bad(reply, "a get carries no value"),
        _ => bad(reply, "unknown operation"),
    }
}

/// How a client's request reaches the server and its reply comes back.
pub trait Call {
    /// Sends `req` and waits for its reply, into `reply`.
    fn call(&mut self, req: &[u8], reply: &mut Vec<u8>) -> Result<(), String>;
}

/// A client's queues: the shared request queue and its own reply queue.
pub struct Queues {
    requests: Queue,
    replies: Queue,
}

impl Call for Queues {
    fn call(&mut self, req: &[u8], reply: &mut Vec<u8>) -> Result<(), String> {
        self.requests
            .put(req, None)
            .map_err(qerr("sending a request"))?;
        self.replies
            .get(reply, None)
            .map_err(qerr("waiting for the reply"))?;
        Ok(())
    }
}

#[cfg(feature = "zeromq")]
impl Call for crate::transport::zmq::Caller {
    fn call(&mut self, req: &[u8], reply: &mut Vec<u8>) -> Result<(), String> {
        crate::transport::zmq::Caller::call(self, req, reply).map_err(|e| e.to_string())
    }
}

/// A client's handle on the dictionary.
pub struct Client<C: Call = Queues> {
    id: u32,
    conn: C,
    req: Vec<u8>,
    reply: Vec<u8>,
}

impl Client {
    /// Joins the dictionary at `addr` as client `id`.
    pub fn connect(addr: &str, id: usize) -> Result<Client, String> {
        let (req, reps) = names(addr)?;
        let rep = reps
            .get(id)
            .ok_or_else(|| format!("no reply queue for client {id}"))?;
        Ok(Client::over(
            Queues {
                requests: Queue::open(req).map_err(qerr("opening the request queue"))?,
                replies: Queue::open(rep).map_err(qerr("opening the reply queue"))?,
            },
            id,
        ))
    }
}

impl<C: Call> Client<C> {
    /// Client `id`, calling over `conn`.
    pub fn over(conn: C, id: usize) -> Client<C> {
        Client {
            id: id as u32,
            conn,
            req: Vec::new(),
            reply: Vec::new(),
        }
    }

    fn call(&mut self, op: u16, key: &[u8], value: &[u8]) -> Result<u8, String> {
        if key.len() > MAX_KEY {
            return Err(format!("keys are at most {MAX_KEY} bytes"));
        }
        self.req.clear();
        self.req.extend_from_slice(&self.id.to_le_bytes());
        self.req.extend_from_slice(&op.to_le_bytes());
        self.req
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.req.extend_from_slice(key);
        self.req.extend_from_slice(value);
        self.conn.call(&self.req, &mut self.reply)?;
        match self.reply.first() {
            Some(&BAD_REQUEST) => Err(format!(
                "the server refused the request: {}",
                String::from_utf8_lossy(&self.reply[1..])
            )),
            Some(&s) => Ok(s),
            None => Err("an empty reply".into()),
        }
    }
}

impl<C: Call> ObjectCalls for Client<C> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        match self.call(OP_SET, key, value)? {
            OK => Ok(()),
            s => Err(format!("set answered status {s}")),
        }
    }

    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        match self.call(OP_GET, key, &[])? {
            OK => {
                out.clear();
                out.extend_from_slice(&self.reply[1..]);
                Ok(true)
            }
            MISSING => Ok(false),
            s => Err(format!("get answered status {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_sets_gets_and_refuses_bad_requests() {
        let mut d = HashMap::new();
        let mut r = Vec::new();
        let req = |client: u32, op: u16, key: &[u8], value: &[u8]| {
            let mut v = client.to_le_bytes().to_vec();
            v.extend_from_slice(&op.to_le_bytes());
            v.extend_from_slice(&(key.len() as u16).to_le_bytes());
            v.extend_from_slice(key);
            v.extend_from_slice(value);
            v
        };
        assert_eq!(
            handle(&req(3, OP_GET, b"k", b""), &mut d, &mut r),
            (Some(3), MISSING)
        );
        assert_eq!(
            handle(&req(3, OP_SET, b"k", b"abc"), &mut d, &mut r),
            (Some(3), OK)
        );
        assert_eq!(
            handle(&req(1, OP_GET, b"k", b""), &mut d, &mut r),
            (Some(1), OK)
        );
        assert_eq!(r, b"\0abc");
        assert_eq!(
            handle(&req(1, OP_SET, b"k", b"z"), &mut d, &mut r),
            (Some(1), OK)
        );
        handle(&req(1, OP_GET, b"k", b""), &mut d, &mut r);
        assert_eq!(r, b"\0z");
        assert_eq!(handle(&[1, 2, 3], &mut d, &mut r), (None, BAD_REQUEST));
        assert_eq!(handle(&req(2, 9, b"k", b""), &mut d, &mut r).1, BAD_REQUEST);
        assert_eq!(
            handle(&req(2, OP_GET, b"k", b"x"), &mut d, &mut r).1,
            BAD_REQUEST
        );
        // A key length past the end of the request.
        let mut long = req(2, OP_GET, b"k", b"");
        long[6] = 200;
        assert_eq!(handle(&long, &mut d, &mut r).1, BAD_REQUEST);
        assert!(r.starts_with(&[BAD_REQUEST]) && r.len() > 1);
    }

    #[test]
    fn clients_in_threads_read_back_what_they_wrote() {
        let setup = Setup::create(3, 64, Wait::SPIN_PARK).unwrap();
        let addr = setup.addr.clone();
        let server = {
            let addr = addr.clone();
            std::thread::spawn(move || Served::open(&addr).and_then(|mut s| answer(&mut s)))
        };
        let clients: Vec<_> = (0..3)
            .map(|id| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(&addr, id).unwrap();
                    let key = format!("client-{id}");
                    let mut out = Vec::new();
                    assert!(!c.get(key.as_bytes(), &mut out).unwrap());
                    for i in 0..500u32 {
                        let v = [id as u8; 40]
                            .iter()
                            .chain(&i.to_le_bytes())
                            .copied()
                            .collect::<Vec<u8>>();
                        c.set(key.as_bytes(), &v).unwrap();
                        assert!(c.get(key.as_bytes(), &mut out).unwrap());
                        assert_eq!(out, v);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        setup.close();
        assert_eq!(server.join().unwrap().unwrap().0, 3 * 1001);
    }
}
