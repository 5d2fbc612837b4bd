//! A point's whole latency histogram as results keep it: HdrHistogram's
//! own V2 encoding, deflated, in base64, so that any percentile can be read
//! again later and repeats can be merged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// An empty histogram of nanoseconds: 1 ns to one hour, three significant
/// digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// `h` in the V2 deflate encoding, in base64.
pub fn encode(h: &Histogram<u64>) -> Option<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).ok()?;
    Some(STANDARD.encode(bytes))
}

/// A histogram from [`encode`]'s text.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("histogram: not base64 ({e})"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: not an HdrHistogram V2 encoding ({e:?})"))
}

/// The encoding of a histogram of (value, count) pairs (nanoseconds);
/// `None` when there are none.
pub fn encode_pairs(pairs: &[(u64, u64)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    let mut h = histogram();
    for &(v, c) in pairs {
        h.saturating_record_n(v.max(1), c);
    }
    encode(&h)
}
