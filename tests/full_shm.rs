//! A full `/dev/shm` is an error that says so, never a SIGBUS: a run whose
//! link does not fit fails that point with "no space in /dev/shm", and the
//! run ends normally. The run is made inside a mount namespace of its own
//! with a 1 MiB tmpfs on `/dev/shm` (root only: skipped with the reason
//! elsewhere).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::bin;
use ipcbench::record::Status;

#[test]
fn a_full_dev_shm_fails_the_point_with_a_clear_error_not_a_crash() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs on /dev/shm needs root");
        return;
    }
    let dir = std::env::temp_dir().join(ipcbench::shm::unique_name("full-shm"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("run.json");
    // A 1 MiB stream's ring takes 4 MiB: it cannot fit in 1 MiB.
    let script = format!(
        "mount -t tmpfs -o size=1m ipcbench-test /dev/shm || exit 97; \
         exec {} run --quick --no-python --no-report --transports shm-ring \
         --patterns stream --sizes 1MiB --wait spin --output {}",
        bin(),
        out.display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("running unshare");
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(97) || stderr.contains("unshare failed") {
        eprintln!("skipped: no mount namespace or tmpfs here: {stderr}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert_eq!(
        o.status.signal(),
        None,
        "the run was killed by a signal (SIGBUS is 7): {stderr}"
    );
    assert!(
        !o.status.success(),
        "a point that did not fit must fail the run"
    );
    let run = ipcbench::record::io::read_results(&out).unwrap();
    let p = run
        .points
        .iter()
        .find(|p| p.transport == "shm-ring" && p.pattern == "stream")
        .unwrap_or_else(|| panic!("no shm-ring stream point in {:?}", run.points));
    assert_eq!(p.status, Status::Failed);
    let e = p.error.as_deref().unwrap_or("");
    assert!(
        e.contains("no space in /dev/shm") && e.contains("bytes needed"),
        "{e}"
    );
    eprintln!("the point failed with: {e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
