//! Two hosts: the far side of a network strategy (the echo, the stream's
//! receiver, or a manager's server with both its clients on the near host)
//! started through a command prefix — `ip netns exec NAME` for a
//! network namespace on this machine, `ssh HOST` for a second machine — and
//! connecting to an address where the near side listens.
//!
//! [`Netns`] makes the second host here: a network namespace joined to
//! this one by a veth pair with link-local addresses (a /30 in
//! 169.254.0.0/16, never routed beyond the link), optionally with a delay
//! each way (`tc netem`). It uses `ip` (and `tc`) from iproute2 and needs
//! root (`CAP_NET_ADMIN`). Dropping it removes the namespace and the link;
//! a run killed outright leaves them, and [`leftovers`] finds them for
//! `ipcbench clean` (their names carry the run's pid).
//!
//! What the namespace does and does not stand for: packets cross a real
//! network device pair and the far side's own network stack (routing,
//! neighbour tables, a separate loopback), so TCP runs with its real
//! segment sizes and no loopback shortcuts; but both ends share this
//! machine's CPUs, memory and kernel, and the wire is a memory copy with
//! no serialisation delay, loss or NIC offloads.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

/// Where the far side of a network strategy runs, and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Far {
    /// The command prefix that starts a far peer (`ip netns exec NAME`).
    pub prefix: Vec<String>,
    /// The address the near side listens on, which the far side reaches.
    pub listen: IpAddr,
    /// The far host's address, where a server started there listens and
    /// the near side reaches it (the manager's, whose clients both stay
    /// on the near host).
    pub addr: IpAddr,
    /// What the two hosts are, for the results (`netns`, `ssh HOST`).
    pub what: String,
}

/// The prefix of every namespace and link a run makes.
pub const PREFIX: &str = "ipcbench-";

/// A network namespace joined to this one by a veth pair.
#[derive(Debug)]
pub struct Netns {
    name: String,
    veth: String,
    /// This side's address.
    pub near: Ipv4Addr,
    /// The namespace's address.
    pub far: Ipv4Addr,
    /// The delay added each way, if any.
    pub delay: Option<Duration>,
}

/// Runs `ip` (or `tc`) with `args`; an error says what failed and why.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("`{cmd}` could not be run ({e}): install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Makes the namespace and the link for this process (`ipcbench-PID`),
    /// with `delay` added each way if given.
    pub fn create(delay: Option<Duration>) -> Result<Netns, String> {
        let pid = std::process::id();
        // A /30 per pid: runs side by side do not collide.
        let (a, b) = (1 + (pid / 64) % 250, (pid % 64) * 4);
        let ns = Netns {
            name: format!("{PREFIX}{pid}"),
            veth: format!("ipcb{pid}"),
            near: Ipv4Addr::new(169, 254, a as u8, (b + 1) as u8),
            far: Ipv4Addr::new(169, 254, a as u8, (b + 2) as u8),
            delay,
        };
        let made = ns.make();
        if let Err(e) = made {
            drop(ns);
            return Err(
                if e.contains("Operation not permitted") || e.contains("Permission denied") {
                    format!("two hosts need root (CAP_NET_ADMIN): {e}")
                } else {
                    e
                },
            );
        }
        Ok(ns)
    }

    fn make(&self) -> Result<(), String> {
        let (ns, veth) = (self.name.as_str(), self.veth.as_str());
        let far_veth = format!("{veth}f");
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &[
                "link", "add", veth, "type", "veth", "peer", "name", &far_veth, "netns", ns,
            ],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{}/30", self.near), "dev", veth],
        )?;
        run("ip", &["link", "set", veth, "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", self.far),
                "dev",
                &far_veth,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", &far_veth, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        if let Some(d) = self.delay {
            let us = format!("{}us", d.as_micros());
            let netem = |args: &[&str]| {
                run("tc", args).map_err(|e| {
                    format!("adding a delay with tc netem (the kernel may lack sch_netem): {e}")
                })
            };
            netem(&["qdisc", "add", "dev", veth, "root", "netem", "delay", &us])?;
            netem(&[
                "-n", ns, "qdisc", "add", "dev", &far_veth, "root", "netem", "delay", &us,
            ])?;
        }
        Ok(())
    }

    /// The far side: started inside the namespace, reaching this side's
    /// address.
    pub fn far(&self) -> Far {
        Far {
            prefix: ["ip", "netns", "exec", &self.name]
                .map(str::to_owned)
                .to_vec(),
            listen: IpAddr::V4(self.near),
            addr: IpAddr::V4(self.far),
            what: match self.delay {
                None => "netns".to_owned(),
                Some(d) => format!("netns, {} us each way", d.as_micros()),
            },
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it
        // the pair; the link is deleted too in case the namespace was not.
        remove(&self.name);
        let _ = run("ip", &["link", "del", &self.veth]);
    }
}

/// Removes a namespace this suite made (and, with it, its link).
pub fn remove(name: &str) {
    let _ = run("ip", &["netns", "del", name]);
    if let Some(pid) = name.strip_prefix(PREFIX) {
        let _ = run("ip", &["link", "del", &format!("ipcb{pid}")]);
    }
}

/// The namespaces of this suite that exist, each with the pid of the run
/// that made it (empty where `ip` is missing or lists none).
pub fn leftovers() -> Vec<(String, u32)> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| {
            let pid = n.strip_prefix(PREFIX)?.parse().ok()?;
            Some((n.to_owned(), pid))
        })
        .collect()
}
