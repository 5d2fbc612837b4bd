//! The length-prefixed frame decoder of the socket and pipe transports,
//! fed arbitrary bytes in pieces whose sizes the input also chooses: it
//! may return messages within the limit or a clear error, never panic,
//! never grow its buffer past twice the limit, never loop.
#![no_main]

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use ipcbench::transport::stream::{StreamConn, StreamIo};
use ipcbench::transport::{Conn, TransportError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4 << 10;

/// Hands out `data` in pieces of 1 to 256 bytes (sizes from `sizes`).
struct Mem {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<u8>,
    turn: usize,
}

impl StreamIo for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let piece = 1 + *self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .unwrap_or(&255) as usize;
        self.turn += 1;
        let n = (self.data.len() - self.pos).min(buf.len()).min(piece);
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

fuzz_target!(|input: &[u8]| {
    // The first 8 bytes choose the piece sizes; the rest is the stream.
    let (sizes, data) = input.split_at(input.len().min(8));
    let mut conn = StreamConn::new(
        Mem {
            data: data.to_vec(),
            pos: 0,
            sizes: sizes.to_vec(),
            turn: 0,
        },
        MAX,
    );
    let mut buf = Vec::new();
    // Every message takes at least its 4-byte length: a bound on the loop.
    for _ in 0..=data.len() / 4 + 1 {
        match conn.recv(&mut buf) {
            Ok(n) => assert!(n <= MAX && buf.len() == n),
            Err(
                TransportError::Closed | TransportError::Malformed(_) | TransportError::PeerGone(_),
            ) => {
                assert!(buf.capacity() <= 2 * MAX);
                return;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(buf.capacity() <= 2 * MAX);
    }
    panic!("more messages than the input can hold");
});
