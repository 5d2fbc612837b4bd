//! A test's stand-in for side B of a ZeroMQ link: ZMTP 3.0 spoken by
//! hand as far as the handshake, then bad frames (the hostile-input
//! tests' [`Inject`](crate::transport::Inject)).

use std::io::{Read, Write};

use super::{HELLO, USER};
use crate::transport::Malformation;

/// ZMTP 3.0 (ZeroMQ's wire protocol, rfc.zeromq.org/spec/23), just enough
/// for a stand-in: a greeting, a command, a frame header.
mod zmtp {
    /// The 64-byte greeting announcing `mechanism`, as a client.
    pub fn greeting(mechanism: &str) -> Vec<u8> {
        let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
        let mut m = [0u8; 20];
        m[..mechanism.len()].copy_from_slice(mechanism.as_bytes());
        g.extend_from_slice(&m);
        g.push(0); // as-server: no
        g.extend_from_slice(&[0u8; 31]);
        g
    }

    /// A command frame: `name`, then `body`.
    pub fn command(name: &str, body: &[u8]) -> Vec<u8> {
        let mut c = vec![name.len() as u8];
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(body);
        let mut f = vec![0x04, c.len() as u8];
        f.extend_from_slice(&c);
        f
    }

    /// The `Socket-Type` property of a `PAIR`.
    pub fn pair_metadata() -> Vec<u8> {
        let mut p = vec![11];
        p.extend_from_slice(b"Socket-Type");
        p.extend_from_slice(&4u32.to_be_bytes());
        p.extend_from_slice(b"PAIR");
        p
    }

    /// A message frame's header announcing `len` bytes (the long form).
    pub fn frame_header(len: u64) -> Vec<u8> {
        let mut h = vec![0x02];
        h.extend_from_slice(&len.to_be_bytes());
        h
    }

    /// Side B's hello: an empty part, then [`super::HELLO`] (short frames).
    pub fn hello() -> Vec<u8> {
        let mut m = vec![0x01, 0, 0x00, super::HELLO.len() as u8];
        m.extend_from_slice(super::HELLO);
        m
    }
}

/// A stand-in for side B, in a thread of its own (a `PLAIN` handshake
/// waits for side A, which connects only after the stand-in is made):
/// speaks ZMTP as far as the handshake (`PLAIN` with `password` if given)
/// and side B's hello, then writes `what`. Dropping what it returns waits
/// for the thread (its reads time out in 2 s) and closes the connection.
pub(super) fn stand_in<S: Read + Write + Send + 'static>(
    s: S,
    password: Option<String>,
    what: Malformation,
) -> Box<dyn Send> {
    struct StandIn<S>(Option<std::thread::JoinHandle<Option<S>>>);
    impl<S> Drop for StandIn<S> {
        fn drop(&mut self) {
            if let Some(t) = self.0.take() {
                drop(t.join());
            }
        }
    }
    let run = move |mut s: S| -> std::io::Result<S> {
        let mut peer = [0u8; 64];
        match password {
            None => {
                s.write_all(&zmtp::greeting("NULL"))?;
                s.write_all(&zmtp::command("READY", &zmtp::pair_metadata()))?;
                // Side A's greeting and READY, before anything else.
                s.read_exact(&mut peer)?;
                let mut head = [0u8; 2];
                s.read_exact(&mut head)?;
                s.read_exact(&mut vec![0u8; head[1] as usize])?;
            }
            Some(pw) => {
                let mut hello = vec![USER.len() as u8];
                hello.extend_from_slice(USER.as_bytes());
                hello.push(pw.len() as u8);
                hello.extend_from_slice(pw.as_bytes());
                s.write_all(&zmtp::greeting("PLAIN"))?;
                s.write_all(&zmtp::command("HELLO", &hello))?;
                s.read_exact(&mut peer)?;
                // WELCOME: flags, size, name length, `WELCOME`.
                let mut welcome = [0u8; 10];
                s.read_exact(&mut welcome)?;
                s.write_all(&zmtp::command("INITIATE", &zmtp::pair_metadata()))?;
            }
        }
        s.write_all(&zmtp::hello())?;
        let bytes = match what {
            Malformation::OversizedLength => zmtp::frame_header(1 << 40),
            Malformation::Truncated => {
                let mut b = zmtp::frame_header(1000);
                b.extend_from_slice(&[7u8; 10]);
                b
            }
        };
        s.write_all(&bytes)?;
        Ok(s)
    };
    Box::new(StandIn(Some(std::thread::spawn(move || run(s).ok()))))
}
