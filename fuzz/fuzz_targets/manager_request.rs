//! The manager's request handler, fed arbitrary requests (the input cut
//! into requests of the lengths its own bytes say): every reply is one of
//! the status codes, and no request panics or waits.
#![no_main]

use ipcbench::transport::manager::handle_requests_for_fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // [len: u8][request] repeated.
    let mut requests = Vec::new();
    let mut rest = input;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        requests.push(&tail[..n]);
        rest = &tail[n..];
    }
    for reply in handle_requests_for_fuzzing(&requests) {
        // A lock request skipped (it would wait) has no reply; any other
        // reply starts with a status code.
        if let Some(&status) = reply.first() {
            assert!(status <= 5, "unknown status {status}");
        }
    }
});
