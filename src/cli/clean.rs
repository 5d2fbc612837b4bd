//! `ipcbench clean`: leftover shared-memory files of ipcbench in
//! `/dev/shm`, removed when their creating process is gone.

use std::time::Duration;

use anyhow::{Context, Result};
use ipcbench::shm::region;

/// Lists leftovers and removes the stale ones (or, with `dry_run`, says
/// which it would remove).
pub fn clean(dry_run: bool) -> Result<()> {
    // What could not be removed; the rest is still cleaned.
    let mut failed: Vec<String> = Vec::new();
    #[cfg(feature = "iceoryx2")]
    match ipcbench::transport::iceoryx2::cleanup(dry_run) {
        Ok(c) => {
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
        Err(e) => {
            println!("iceoryx2: could not clean up its files: {e}");
            failed.push("iceoryx2's files".into());
        }
    }
    // The Python baseline's private directories of runs that are gone.
    for (dir, pid) in ipcbench::harness::python::leftover_dirs() {
        let alive = ipcbench::shm::liveness::PeerId { pid, start: 0 }.is_alive();
        if alive {
            println!("kept    {} (run pid {pid} is running)", dir.display());
        } else if dry_run {
            println!("would remove {} (run pid {pid} is gone)", dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&dir) {
            println!(
                "could not remove {} (run pid {pid} is gone): {e}",
                dir.display()
            );
            failed.push(dir.display().to_string());
        } else {
            println!("removed {} (run pid {pid} is gone)", dir.display());
        }
    }
    // The network namespaces (and their veth links) of runs that are gone.
    for (name, pid) in ipcbench::harness::hosts::leftovers() {
        let alive = ipcbench::shm::liveness::PeerId { pid, start: 0 }.is_alive();
        if alive {
            println!("kept    network namespace {name} (run pid {pid} is running)");
        } else if dry_run {
            println!("would remove network namespace {name} (run pid {pid} is gone)");
        } else {
            ipcbench::harness::hosts::remove(&name);
            if ipcbench::harness::hosts::leftovers()
                .iter()
                .any(|(n, _)| *n == name)
            {
                println!("could not remove network namespace {name}");
                failed.push(format!("network namespace {name}"));
            } else {
                println!("removed network namespace {name} and its link (run pid {pid} is gone)");
            }
        }
    }
    let leftovers = region::list_leftovers().context("listing /dev/shm")?;
    if leftovers.is_empty() {
        println!("/dev/shm holds no ipcbench files");
    }
    let (mut removed, mut kept) = (0, 0);
    for l in &leftovers {
        let who = match (l.not_a_file, l.creator) {
            (Some(what), _) => format!("{what}, not a file ipcbench makes"),
            (None, Some(c)) if l.creator_alive => format!("creator pid {} is running", c.pid),
            (None, Some(c)) => format!("creator pid {} is gone", c.pid),
            (None, None) => "no readable header".to_owned(),
        };
        if !region::is_stale(l, Duration::from_secs(60)) {
            println!("kept    {} ({who})", l.name);
            kept += 1;
        } else if dry_run {
            println!("would remove {} ({who})", l.name);
            removed += 1;
        } else {
            // One that cannot be removed (another user's, in a sticky
            // /dev/shm) is said and the rest are still cleaned.
            match region::remove_leftover(&l.name) {
                Ok(()) => {
                    println!("removed {} ({who})", l.name);
                    removed += 1;
                }
                Err(e) => {
                    println!("could not remove {} ({who}): {e}", l.name);
                    failed.push(l.name.clone());
                }
            }
        }
    }
    if !leftovers.is_empty() {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed}, kept {kept} in use or not ours");
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} stale file(s) or directories could not be removed ({}): remove them as their \
             owner or as root",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
