//! A client of the manager's server: every method one request and one
//! reply, after the handshake.

use std::time::Duration;

use super::super::stream::{StreamConn, StreamIo};
use super::super::{Conn, TransportError};
use super::{HANDSHAKE_MAX, HANDSHAKE_TIMEOUT, client_handshake, op, status};

/// A proxy to the server's objects: every call is one request and one reply.
pub struct Proxy<S: StreamIo> {
    conn: StreamConn<S>,
    req: Vec<u8>,
    timeout: Option<Duration>,
}

fn reply_err(code: u8, body: &[u8]) -> TransportError {
    match code {
        status::CLOSED => TransportError::Closed,
        status::PEER_GONE => TransportError::PeerGone(
            "a process that put into this queue died without closing it".into(),
        ),
        status::EMPTY => TransportError::Timeout,
        status::ERROR => TransportError::Malformed(format!(
            "the server refused a request: {}",
            String::from_utf8_lossy(body)
        )),
        c => TransportError::Malformed(format!("unexpected reply code {c}")),
    }
}

impl<S: StreamIo> Proxy<S> {
    /// Authenticates on a connected stream.
    pub fn new(stream: S, key: &[u8], max: usize) -> Result<Self, TransportError> {
        let mut conn = StreamConn::new(stream, HANDSHAKE_MAX);
        conn.set_timeout(Some(HANDSHAKE_TIMEOUT))?;
        client_handshake(&mut conn, key)?;
        let mut conn = conn.with_max(max.saturating_add(16));
        conn.set_timeout(None)?;
        Ok(Proxy {
            conn,
            req: Vec::new(),
            timeout: None,
        })
    }

    /// Sends request `code` on object `name` with `payload`; the reply's
    /// status and body land in `reply`.
    fn call(
        &mut self,
        code: u8,
        name: &[u8],
        payload: &[u8],
        reply: &mut Vec<u8>,
    ) -> Result<u8, TransportError> {
        self.req.clear();
        self.req.push(code);
        self.req.push(name.len() as u8);
        self.req.extend_from_slice(name);
        self.req.extend_from_slice(payload);
        self.conn.send(&self.req)?;
        self.conn.recv(reply).map_err(|e| match e {
            TransportError::Closed | TransportError::PeerGone(_) => {
                TransportError::PeerGone(format!("the manager server went away: {e}"))
            }
            e => e,
        })?;
        match reply.first() {
            Some(&s) => Ok(s),
            None => Err(TransportError::Malformed("empty reply".into())),
        }
    }

    fn expect_ok(
        &mut self,
        code: u8,
        name: &[u8],
        payload: &[u8],
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        match self.call(code, name, payload, reply)? {
            status::OK => {
                reply.remove(0);
                Ok(())
            }
            s => Err(reply_err(s, &reply[1..])),
        }
    }

    /// Test support: sends `req` as it is and returns the reply's body, or
    /// the error its status stands for.
    #[doc(hidden)]
    pub fn raw_request(&mut self, req: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut reply = Vec::new();
        self.conn.send(req)?;
        self.conn.recv(&mut reply)?;
        match reply.first() {
            Some(&status::OK) => Ok(reply[1..].to_vec()),
            Some(&s) => Err(reply_err(s, &reply[1..])),
            None => Err(TransportError::Malformed("empty reply".into())),
        }
    }

    /// Test support: sends the frame of `req` cut after `keep` bytes, as a
    /// client that dies mid-request leaves it; the proxy is unusable after.
    #[doc(hidden)]
    pub fn send_cut(&mut self, req: &[u8], keep: usize) -> Result<(), TransportError> {
        self.conn.send_cut(req, keep)
    }

    /// `queue[name].put(item)`.
    pub fn put(&mut self, name: &[u8], item: &[u8]) -> Result<(), TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::PUT, name, item, &mut reply)
    }

    /// `queue[name].get()`, into `buf`, within the proxy's timeout.
    pub fn get(&mut self, name: &[u8], buf: &mut Vec<u8>) -> Result<usize, TransportError> {
        let ms = self
            .timeout
            .map_or(u32::MAX, |t| t.as_millis().min(u32::MAX as u128 - 1) as u32);
        self.expect_ok(op::GET, name, &ms.to_le_bytes(), buf)?;
        Ok(buf.len())
    }

    /// Closes `queue[name]`: getters drain it, then learn it closed.
    pub fn close_queue(&mut self, name: &[u8]) -> Result<(), TransportError> {
        self.expect_ok(op::CLOSE_QUEUE, name, &[], &mut Vec::new())
    }

    /// `dict[key] = value`.
    pub fn dict_set(&mut self, key: &[u8], value: &[u8]) -> Result<(), TransportError> {
        self.expect_ok(op::DICT_SET, key, value, &mut Vec::new())
    }

    /// `dict.get(key)`.
    pub fn dict_get(
        &mut self,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, TransportError> {
        self.get_or_missing(op::DICT_GET, key, out)
    }

    /// `lock.acquire()`.
    pub fn lock_acquire(&mut self) -> Result<(), TransportError> {
        self.expect_ok(op::LOCK_ACQUIRE, b"", &[], &mut Vec::new())
    }

    /// `lock.release()`.
    pub fn lock_release(&mut self) -> Result<(), TransportError> {
        self.expect_ok(op::LOCK_RELEASE, b"", &[], &mut Vec::new())
    }

    /// `counter += n`; returns the new value.
    pub fn counter_add(&mut self, n: i64) -> Result<i64, TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::COUNTER_ADD, b"", &n.to_le_bytes(), &mut reply)?;
        let v: [u8; 8] = reply
            .as_slice()
            .try_into()
            .map_err(|_| TransportError::Malformed("counter reply is not 8 bytes".into()))?;
        Ok(i64::from_le_bytes(v))
    }

    /// `list[name].append(item)`; returns the list's new length.
    pub fn list_append(&mut self, name: &[u8], item: &[u8]) -> Result<u64, TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::LIST_APPEND, name, item, &mut reply)?;
        let n: [u8; 8] = reply.as_slice().try_into().map_err(|_| {
            TransportError::Malformed("a list's length reply is not 8 bytes".into())
        })?;
        Ok(u64::from_le_bytes(n))
    }

    /// `list[name][index]` into `buf` (a negative index counts from the
    /// end); an index out of range is the server's error.
    pub fn list_get(
        &mut self,
        name: &[u8],
        index: i64,
        buf: &mut Vec<u8>,
    ) -> Result<usize, TransportError> {
        self.expect_ok(op::LIST_GET, name, &index.to_le_bytes(), buf)?;
        Ok(buf.len())
    }

    /// `namespace.<attr> = value`.
    pub fn ns_set(&mut self, attr: &[u8], value: &[u8]) -> Result<(), TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::NS_SET, attr, value, &mut reply)
    }

    /// `namespace.<attr>` into `buf`; `None` when it has no such attribute.
    pub fn ns_get(
        &mut self,
        attr: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, TransportError> {
        self.get_or_missing(op::NS_GET, attr, buf)
    }

    /// `value[name].value = v` (a `Value('d')`).
    pub fn value_set(&mut self, name: &[u8], v: f64) -> Result<(), TransportError> {
        let mut reply = Vec::new();
        self.expect_ok(op::VALUE_SET, name, &v.to_le_bytes(), &mut reply)
    }

    /// `value[name].value`; `None` when it was never set.
    pub fn value_get(&mut self, name: &[u8]) -> Result<Option<f64>, TransportError> {
        let mut buf = Vec::new();
        match self.get_or_missing(op::VALUE_GET, name, &mut buf)? {
            None => Ok(None),
            Some(_) => {
                let v: [u8; 8] = buf.as_slice().try_into().map_err(|_| {
                    TransportError::Malformed("a value's reply is not 8 bytes".into())
                })?;
                Ok(Some(f64::from_le_bytes(v)))
            }
        }
    }

    /// A read that may find nothing: the body into `buf`, or `None`.
    fn get_or_missing(
        &mut self,
        code: u8,
        name: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, TransportError> {
        match self.call(code, name, &[], buf)? {
            status::OK => {
                buf.remove(0);
                Ok(Some(buf.len()))
            }
            status::MISSING => Ok(None),
            s => Err(reply_err(s, &buf[1..])),
        }
    }

    /// Bounds later calls (a `get` waits at most this long in the server).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), TransportError> {
        self.timeout = t;
        // The socket waits a little longer than the server does.
        self.conn.set_timeout(t.map(|t| t + Duration::from_secs(5)))
    }
}

// ---------------------------------------------------------------------------
// The transport.
