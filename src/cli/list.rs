//! `ipcbench list`: every strategy, one name a line, with what it is.

use ipcbench::harness;
use ipcbench::transport::TransportKind;

/// Prints every strategy the suite measures, with a line on each.
pub fn list() {
    for k in TransportKind::ALL {
        println!("{:<19} {}", k.name(), k.description());
    }
    for p in harness::sync::Prim::ALL {
        println!("{:<19} {}", p.name(), p.description());
    }
    for m in harness::startup::Method::ALL {
        println!("{:<19} {}", m.name(), m.description());
    }
    for (name, what) in harness::python::TRANSPORTS {
        println!("{name:<19} Python multiprocessing: {what}");
    }
}
