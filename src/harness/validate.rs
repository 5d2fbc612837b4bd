//! What every benchmark message carries, and how the receiver checks it.
//!
//! A message of `size` bytes (at least [`MIN_SIZE`]):
//!
//! - `size >= 32`: `[seq: u64][send time: u64][sum: u64] payload [seq: u64]`.
//!   `sum` mixes the sequence number, the send time and a checksum of the
//!   payload; the trailing copy of `seq` catches a message whose end is
//!   stale (torn). The payload is filled once per run; every byte of it is
//!   read by the checksum on every receive.
//! - `8 <= size < 32`: every byte derives from `seq` (`[seq: u32]` then
//!   bytes of a hash of `seq`), and the receiver compares all of them. Such
//!   messages carry no send time.
//!
//! So a lost, duplicated, reordered, truncated, torn or corrupted message is
//! a validation error, and the point that saw it is recorded as failed.
//!
//! [`Frames`] checks the test roles' frames of any length (0 B up) the same
//! way: length and every byte derived from the sequence number.

/// A SplitMix64 step: a fast, well-mixed function of its input.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The smallest message the harness sends.
pub const MIN_SIZE: usize = 8;
/// The smallest message that carries a send time.
pub const STAMPED_SIZE: usize = 32;

/// A checksum of `b` that reads every byte: a sum of 64-bit words, each
/// xored with its index (so moved words change it), plus the tail bytes.
/// It vectorizes, so checking costs about as much as reading.
#[inline]
pub fn checksum(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut s = 0u64;
    for (i, c) in (&mut chunks).enumerate() {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        s = s.wrapping_add(w ^ i as u64);
    }
    for (i, &t) in chunks.remainder().iter().enumerate() {
        s = s.wrapping_add(u64::from(t) << (8 * i));
    }
    s
}

/// The bytes after a small message's sequence number: byte `i` is byte
/// `i % 8` of `mix64(seq)` xored with `i`. The hash is computed once per
/// message (a message's cost to the harness is part of every figure).
#[inline]
fn tiny_bytes(seq: u64) -> impl Iterator<Item = u8> {
    let h = mix64(seq).to_le_bytes();
    (0..).map(move |i: usize| h[i % 8] ^ (i as u8))
}

/// Writes and checks the messages of one run of one size.
#[derive(Debug, Clone)]
pub struct Codec {
    size: usize,
    /// The checksum of the fixed payload (large messages).
    payload_sum: u64,
    /// A message buffer with the payload filled in.
    template: Vec<u8>,
}

impl Codec {
    /// A codec for messages of `size` bytes (at least [`MIN_SIZE`]).
    pub fn new(size: usize) -> Result<Codec, String> {
        if size < MIN_SIZE {
            return Err(format!(
                "message size {size} B is below the harness minimum of {MIN_SIZE} B"
            ));
        }
        let mut template = vec![0u8; size];
        let mut payload_sum = 0;
        if size >= STAMPED_SIZE {
            let payload = &mut template[24..size - 8];
            let mut state = 0x5eed_u64;
            for c in payload.chunks_mut(8) {
                state = mix64(state);
                let b = state.to_le_bytes();
                c.copy_from_slice(&b[..c.len()]);
            }
            payload_sum = checksum(&template[24..size - 8]);
        }
        Ok(Codec {
            size,
            payload_sum,
            template,
        })
    }

    /// The message size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether messages carry a send time.
    pub fn stamped(&self) -> bool {
        self.size >= STAMPED_SIZE
    }

    /// A buffer to send from, with the payload filled in.
    pub fn buffer(&self) -> Vec<u8> {
        self.template.clone()
    }

    /// Makes `buf` (from [`Codec::buffer`]) message `seq`, sent at `ts` (ns).
    #[inline]
    pub fn stamp(&self, buf: &mut [u8], seq: u64, ts: u64) {
        if self.size >= STAMPED_SIZE {
            let sum = self.payload_sum ^ mix64(seq ^ ts.rotate_left(17));
            buf[0..8].copy_from_slice(&seq.to_le_bytes());
            buf[8..16].copy_from_slice(&ts.to_le_bytes());
            buf[16..24].copy_from_slice(&sum.to_le_bytes());
            buf[self.size - 8..].copy_from_slice(&seq.to_le_bytes());
        } else {
            buf[0..4].copy_from_slice(&(seq as u32).to_le_bytes());
            for (b, want) in buf[4..].iter_mut().zip(tiny_bytes(seq)) {
                *b = want;
            }
        }
    }

    /// Checks that `got` is message `seq`; returns its send time (0 if
    /// unstamped).
    #[inline]
    pub fn check(&self, got: &[u8], seq: u64) -> Result<u64, String> {
        if got.len() != self.size {
            return Err(format!(
                "message {seq}: {} bytes where {} were sent",
                got.len(),
                self.size
            ));
        }
        if self.size >= STAMPED_SIZE {
            let word = |at: usize| u64::from_le_bytes(got[at..at + 8].try_into().unwrap_or([0; 8]));
            let (s, ts, sum, tail) = (word(0), word(8), word(16), word(self.size - 8));
            if s != seq {
                return Err(format!(
                    "expected message {seq}, got message {s} (lost, duplicated or reordered)"
                ));
            }
            if tail != seq {
                return Err(format!(
                    "message {seq}: its end belongs to message {tail} (torn)"
                ));
            }
            let want = checksum(&got[24..self.size - 8]) ^ mix64(seq ^ ts.rotate_left(17));
            if sum != want {
                return Err(format!("message {seq}: checksum mismatch (corrupted)"));
            }
            Ok(ts)
        } else {
            let s = u32::from_le_bytes([got[0], got[1], got[2], got[3]]);
            if s != seq as u32 {
                return Err(format!(
                    "expected message {seq}, got message {s} (lost, duplicated or reordered)"
                ));
            }
            if got[4..]
                .iter()
                .zip(tiny_bytes(seq))
                .any(|(b, want)| *b != want)
            {
                return Err(format!("message {seq}: content corrupted"));
            }
            Ok(0)
        }
    }

    /// Reads the sequence number a message carries and checks the message
    /// against it (for receivers that cannot know which message comes next,
    /// as in fan-in and MPMC); returns `(seq, send time)`. Small messages
    /// carry only the low 32 bits of the sequence number.
    #[inline]
    pub fn check_any(&self, got: &[u8]) -> Result<(u64, u64), String> {
        if got.len() != self.size {
            return Err(format!(
                "a message of {} bytes where {} were sent",
                got.len(),
                self.size
            ));
        }
        let seq = if self.size >= STAMPED_SIZE {
            u64::from_le_bytes(got[0..8].try_into().unwrap_or([0; 8]))
        } else {
            u64::from(u32::from_le_bytes([got[0], got[1], got[2], got[3]]))
        };
        self.check(got, seq).map(|ts| (seq, ts))
    }

    /// The harness's own cost per message, measured here: one stamp and one
    /// check of a message of this size, in nanoseconds.
    pub fn calibrate(&self) -> f64 {
        let mut buf = self.buffer();
        let rounds: u64 = (64 << 20) / (self.size as u64).max(64);
        let rounds = rounds.clamp(64, 200_000);
        let t0 = std::time::Instant::now();
        for seq in 0..rounds {
            self.stamp(&mut buf, seq, seq);
            let r = self.check(std::hint::black_box(&buf), seq);
            std::hint::black_box(r.ok());
        }
        t0.elapsed().as_nanos() as f64 / rounds as f64
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, one clock for every process.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Frames of varying length, 0 bytes up (the conformance suite and the
/// core's process tests, which need empty and odd-sized frames that a
/// [`Codec`] message cannot be): the frames of a test role: the length and content of frame `seq` of a
/// run seeded `seed`, derived from both.
#[derive(Debug, Clone, Copy)]
pub struct Frames {
    /// The run's seed.
    pub seed: u64,
    /// The largest length [`Frames::len`] returns.
    pub max_len: usize,
}

impl Frames {
    /// The length of message `seq`: uniform in `0..=max_len`.
    #[inline]
    pub fn len(&self, seq: u64) -> usize {
        (mix64(self.seed ^ seq.rotate_left(32)) % (self.max_len as u64 + 1)) as usize
    }

    /// Fills `buf` with the content of message `seq`: the sequence number
    /// first (as far as it fits), then pseudo-random words.
    #[inline]
    pub fn fill(&self, seq: u64, buf: &mut [u8]) {
        let mut state = mix64(self.seed.wrapping_add(seq));
        let (head, rest) = buf.split_at_mut(buf.len().min(8));
        head.copy_from_slice(&seq.to_le_bytes()[..head.len()]);
        let mut chunks = rest.chunks_exact_mut(8);
        for c in &mut chunks {
            state = mix64(state);
            c.copy_from_slice(&state.to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let n = tail.len();
        tail.copy_from_slice(&mix64(state ^ 1).to_le_bytes()[..n]);
    }

    /// Checks that `got` is message `seq`, byte for byte.
    pub fn check(&self, seq: u64, got: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        let len = self.len(seq);
        if got.len() != len {
            return Err(format!(
                "message {seq}: length {} where {len} was sent",
                got.len()
            ));
        }
        scratch.resize(len, 0);
        self.fill(seq, scratch);
        if got != &scratch[..] {
            let at = got
                .iter()
                .zip(scratch.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            if len >= 8 {
                let seen = u64::from_le_bytes(got[..8].try_into().unwrap_or_default());
                if seen != seq {
                    return Err(format!(
                        "message {seq}: carries sequence number {seen} (lost, duplicated or reordered)"
                    ));
                }
            }
            return Err(format!("message {seq}: byte {at} differs (corrupted)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_damage_is_caught() {
        for size in [8, 9, 23, 31, 32, 33, 64, 1000, 4096] {
            let c = Codec::new(size).unwrap();
            let mut m = c.buffer();
            c.stamp(&mut m, 7, 123);
            assert_eq!(c.check(&m, 7).unwrap(), if size >= 32 { 123 } else { 0 });
            assert!(c.check(&m, 8).unwrap_err().contains("lost"), "{size}");
            for at in [4, size / 2, size - 1] {
                let mut bad = m.clone();
                bad[at] ^= 0x40;
                assert!(
                    c.check(&bad, 7).is_err(),
                    "size {size}: flip at {at} not caught"
                );
            }
            assert!(c.check(&m[..size - 1], 7).is_err());
            if size >= 32 {
                // A torn message: the head of 8, the end of 7.
                let mut other = c.buffer();
                c.stamp(&mut other, 8, 5);
                let mut torn = other.clone();
                torn[size - 8..].copy_from_slice(&m[size - 8..]);
                assert!(c.check(&torn, 8).unwrap_err().contains("torn"));
            }
        }
        assert!(Codec::new(4).is_err());
    }

    #[test]
    fn calibration_is_a_positive_cost() {
        let c = Codec::new(4096).unwrap();
        let ns = c.calibrate();
        assert!(ns > 0.0 && ns < 1e6, "{ns}");
    }
}
