//! `ipcbench clean`: leftover shared-memory files of ipcbench in
//! `/dev/shm`, removed when their creating process is gone.

use std::time::Duration;

use anyhow::{Context, Result};
use ipcbench::shm::region;

/// Lists leftovers and removes the stale ones (or, with `dry_run`, says
/// which it would remove).
pub fn clean(dry_run: bool) -> Result<()> {
    #[cfg(feature = "iceoryx2")]
    {
        let c = ipcbench::transport::iceoryx2::cleanup(dry_run)
            .context("cleaning up iceoryx2's files")?;
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "iceoryx2: {verb} the files of {} dead node(s){}; {} node(s) running",
            c.dead_nodes,
            if c.global_segment {
                " and its global segment"
            } else {
                ""
            },
            c.alive_nodes
        );
    }
    // The Python baseline's private directories of runs that are gone.
    for (dir, pid) in ipcbench::harness::python::leftover_dirs() {
        let alive = ipcbench::shm::liveness::PeerId { pid, start: 0 }.is_alive();
        if alive {
            println!("kept    {} (run pid {pid} is running)", dir.display());
        } else if dry_run {
            println!("would remove {} (run pid {pid} is gone)", dir.display());
        } else {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            println!("removed {} (run pid {pid} is gone)", dir.display());
        }
    }
    let leftovers = region::list_leftovers().context("listing /dev/shm")?;
    if leftovers.is_empty() {
        println!("/dev/shm holds no ipcbench files");
        return Ok(());
    }
    let (mut removed, mut kept) = (0, 0);
    for l in &leftovers {
        let who = match l.creator {
            Some(c) if l.creator_alive => format!("creator pid {} is running", c.pid),
            Some(c) => format!("creator pid {} is gone", c.pid),
            None => "no readable header".to_owned(),
        };
        if region::is_stale(l, Duration::from_secs(60)) {
            if dry_run {
                println!("would remove {} ({who})", l.name);
            } else {
                region::remove_leftover(&l.name).with_context(|| format!("removing {}", l.name))?;
                println!("removed {} ({who})", l.name);
            }
            removed += 1;
        } else {
            println!("kept    {} ({who})", l.name);
            kept += 1;
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!("{verb} {removed}, kept {kept} in use");
    Ok(())
}
