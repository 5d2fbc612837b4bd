//! The layers of `src/` point one way (DESIGN.md's map): `shm` knows
//! nothing of the rest; `transport` nothing of the measuring side;
//! `record` sits below both `harness` and `report`, which know nothing of
//! each other. Atomics come through `shm/sync.rs` only (clippy cannot tell
//! a re-export from the type it re-exports, so a test reads the source),
//! and the harness names no concrete transport: what each can do is in its
//! registry row. These read the source as text, non-test code only.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A file's code before its first `#[cfg(test)]`, comments dropped.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The files of layer `dir` that mention any of `forbidden`.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in sources(&root().join(dir)) {
        let c = code(&f);
        for word in forbidden {
            if c.contains(word) {
                out.push(format!("{} uses {word}", f.display()));
            }
        }
    }
    out
}

#[test]
fn each_layer_knows_only_those_below_it() {
    let up = |dir: &str, above: &[&str]| {
        let words: Vec<String> = above
            .iter()
            .flat_map(|m| [format!("crate::{m}"), format!("ipcbench::{m}")])
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        offenders(dir, &words)
    };
    let mut bad = Vec::new();
    bad.extend(up("shm", &["transport", "record", "harness", "report"]));
    bad.extend(up("transport", &["record", "harness", "report"]));
    bad.extend(up("record", &["transport", "harness", "report"]));
    bad.extend(up("harness", &["report"]));
    bad.extend(up("report", &["harness", "transport", "shm"]));
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn atomics_come_through_shm_sync_only() {
    let mut bad = Vec::new();
    for f in sources(&root()) {
        if f.ends_with("shm/sync.rs") {
            continue;
        }
        if std::fs::read_to_string(&f)
            .unwrap()
            .contains("std::sync::atomic")
        {
            bad.push(f.display().to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "std::sync::atomic outside shm/sync.rs: {bad:#?}"
    );
}

#[test]
fn the_harness_names_no_concrete_transport() {
    let mut bad = Vec::new();
    for f in sources(&root().join("harness")) {
        let c = code(&f);
        for (i, l) in c.lines().enumerate() {
            if let Some(at) = l.find("TransportKind::") {
                let rest = &l[at + "TransportKind::".len()..];
                if rest.starts_with(|ch: char| ch.is_ascii_uppercase()) && !rest.starts_with("ALL")
                {
                    bad.push(format!("{}:{}: {}", f.display(), i + 1, l.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "say it in the transport's registry row instead: {bad:#?}"
    );
}
