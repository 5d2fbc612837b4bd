//! Results files: a run as JSON (the contract) with CSV beside it, written
//! atomically (a temporary file, then a rename) after every point, so a
//! crash or a full disk never leaves a half-written results file: the
//! previous complete one stays.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::RunRecord;

/// The run as pretty JSON.
pub fn to_json(run: &RunRecord) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(run).unwrap_or_default()
}

/// The points as CSV, one row per point, with a header row.
pub fn to_csv(run: &RunRecord) -> String {
    let mut s = String::from(
        "transport,pattern,msg_size,producers,consumers,wait,pinned,oversubscribed,messages,elapsed_ns,validated,error,\
         latency_mean_ns,latency_p50_ns,latency_p90_ns,latency_p99_ns,latency_p999_ns,latency_max_ns,\
         msgs_per_s,bytes_per_s,cpu_ns_per_msg,batched_mean_ns,harness_ns_per_msg,latency_p9999_ns\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for p in &run.points {
        let l = p.latency_ns;
        let cells = [
            p.transport.clone(),
            p.pattern.clone(),
            p.msg_size.to_string(),
            p.producers.to_string(),
            p.consumers.to_string(),
            p.wait.clone(),
            p.pinned.to_string(),
            p.oversubscribed.to_string(),
            p.messages.to_string(),
            p.elapsed_ns.to_string(),
            p.validated.to_string(),
            csv_quote(p.error.as_deref().unwrap_or("")),
            opt(l.map(|l| format!("{:.1}", l.mean))),
            opt(l.map(|l| l.p50.to_string())),
            opt(l.map(|l| l.p90.to_string())),
            opt(l.map(|l| l.p99.to_string())),
            opt(l.map(|l| l.p999.to_string())),
            opt(l.map(|l| l.max.to_string())),
            opt(p.throughput.map(|t| format!("{:.1}", t.msgs_per_s))),
            opt(p.throughput.map(|t| format!("{:.1}", t.bytes_per_s))),
            opt(p.cpu_ns_per_msg.map(|c| format!("{c:.1}"))),
            opt(p.batched_mean_ns.map(|c| format!("{c:.1}"))),
            opt(p.harness_ns_per_msg.map(|c| format!("{c:.1}"))),
            opt(l.and_then(|l| l.p9999).map(|v| v.to_string())),
        ];
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

fn csv_quote(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// Why results could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {io} (the previous complete file, if any, is kept; free space or choose another --output)", .path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// The error, said in the message (not repeated as its cause).
    pub io: std::io::Error,
}

/// A file written in full beside its final path, not yet in place.
struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    placed: bool,
}

impl Staged {
    /// Writes `contents` beside `path`, synced; the file at `path` is not
    /// touched yet. Where a full disk or a bad path fails, it fails here.
    fn write(path: &Path, contents: &str) -> Result<Staged, WriteError> {
        let err = |io| WriteError {
            path: path.to_owned(),
            io,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let staged = Staged {
            tmp: path.with_extension(format!(
                "{}.tmp-{}",
                path.extension().and_then(|e| e.to_str()).unwrap_or(""),
                std::process::id()
            )),
            path: path.to_owned(),
            placed: false,
        };
        let mut f = std::fs::File::create(&staged.tmp).map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(staged)
    }

    /// Replaces the file at its path with the staged one, in one rename.
    fn place(mut self) -> Result<(), WriteError> {
        std::fs::rename(&self.tmp, &self.path).map_err(|io| WriteError {
            path: self.path.clone(),
            io,
        })?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `contents` to `path` atomically.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), WriteError> {
    Staged::write(path, contents)?.place()
}

/// Writes `run` as JSON at `path` and as CSV beside it (`.csv`), in step:
/// both are written in full before either replaces its predecessor, so a
/// write that fails (a full disk, a path that cannot be written) leaves
/// both at the previous point. The CSV is placed first: the two renames
/// cannot be one, and if the JSON's were to fail after the CSV's, the JSON
/// (the contract) still says what the last complete run was.
pub fn write_results(path: &Path, run: &RunRecord) -> Result<(), WriteError> {
    let json = Staged::write(path, &to_json(run))?;
    let csv = Staged::write(&path.with_extension("csv"), &to_csv(run))?;
    csv.place()?;
    json.place()
}

/// Reads a results file.
pub fn read_results(path: &Path) -> Result<RunRecord, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    // The version first: a newer file may not parse as this schema, and
    // its error should say why rather than name a field.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    if let Ok(v) = serde_json::from_str::<Version>(&text)
        && v.schema_version > crate::record::SCHEMA_VERSION
    {
        return Err(format!(
            "{} has results schema {}, newer than this ipcbench reads ({}): use the ipcbench that \
             wrote it, or a newer one",
            path.display(),
            v.schema_version,
            crate::record::SCHEMA_VERSION
        ));
    }
    let mut run: RunRecord = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an ipcbench results file: {e}", path.display()))?;
    if run.schema_version < 3 {
        // A pingpong point's floor beside it was the 8 B spin floor then;
        // it is the same-work copy floor now. Not the same yardstick: drop
        // it rather than read it as the other.
        for p in run.points.iter_mut().filter(|p| p.pattern == "pingpong") {
            p.adjacent_floors.clear();
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Latency, Machine, PointRecord, Throughput};

    fn sample() -> RunRecord {
        RunRecord {
            schema_version: 1,
            run_id: "t".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            machine: Machine {
                cpu_model: "cpu".into(),
                cores: 2,
                kernel: "6".into(),
                os: "Linux".into(),
                rustc: "rustc 1".into(),
                git_commit: "abc".into(),
                topology: None,
            },
            config: serde_json::json!({"profile": "quick"}),
            points: vec![
                PointRecord {
                    transport: "shm-ring".into(),
                    pattern: "pingpong".into(),
                    msg_size: 64,
                    producers: 1,
                    consumers: 1,
                    wait: "spin".into(),
                    pinned: true,
                    oversubscribed: false,
                    messages: 10,
                    elapsed_ns: 1000,
                    validated: true,
                    status: crate::record::Status::Ok,
                    error: None,
                    latency_ns: Some(Latency {
                        mean: 100.0,
                        p50: 90,
                        p90: 95,
                        p99: 120,
                        p999: 130,
                        p9999: Some(135),
                        max: 140,
                    }),
                    throughput: Some(Throughput {
                        msgs_per_s: 1e7,
                        bytes_per_s: 6.4e8,
                    }),
                    cpu_ns_per_msg: Some(200.0),
                    batched_mean_ns: Some(99.0),
                    harness_ns_per_msg: Some(3.0),
                    cpus: vec![0, 1],
                    cpu_relation: Some("same L3".into()),
                    repeats: vec![],
                    adjacent_floors: vec![],
                    repeat_floors: vec![],
                    tries: None,
                    measured_ns: Some(1000),
                    batches: vec![(90, 1e7); 6],
                    ci95: Some(crate::record::Ci95 {
                        p50_ns: Some([90.0, 90.0]),
                        msgs_per_s: Some([1e7, 1e7]),
                    }),
                    histogram: None,
                    criterion: None,
                    hosts: None,
                    far_side: None,
                    rate: Default::default(),
                },
                PointRecord {
                    transport: "tcp".into(),
                    pattern: "stream".into(),
                    msg_size: 8,
                    producers: 1,
                    consumers: 1,
                    wait: "kernel".into(),
                    pinned: true,
                    oversubscribed: false,
                    messages: 0,
                    elapsed_ns: 0,
                    validated: false,
                    status: crate::record::Status::Failed,
                    error: Some("peer B: expected message 3, got message 4, \"lost\"".into()),
                    latency_ns: None,
                    throughput: None,
                    cpu_ns_per_msg: None,
                    batched_mean_ns: None,
                    harness_ns_per_msg: None,
                    cpus: vec![],
                    cpu_relation: None,
                    repeats: vec![],
                    adjacent_floors: vec![],
                    repeat_floors: vec![],
                    tries: None,
                    measured_ns: None,
                    batches: vec![],
                    ci95: None,
                    histogram: None,
                    criterion: None,
                    hosts: None,
                    far_side: None,
                    rate: Default::default(),
                },
            ],
        }
    }

    #[test]
    fn json_round_trips_and_csv_has_a_row_per_point() {
        let run = sample();
        let back: RunRecord = serde_json::from_str(&to_json(&run)).unwrap();
        assert_eq!(back, run);
        let csv = to_csv(&run);
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols = lines[0].split(',').count();
        assert!(lines[1].starts_with("shm-ring,pingpong,64,"));
        assert_eq!(lines[1].split(',').count(), cols);
        assert!(lines[2].contains("\"peer B: expected message 3, got message 4, \"\"lost\"\"\""));
    }

    /// The rows of `csv` as (column, cell) maps, quotes undone.
    fn parse_csv(csv: &str) -> Vec<Vec<(String, String)>> {
        let split = |line: &str| {
            let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => cells.push(std::mem::take(&mut cell)),
                    (c, _) => cell.push(c),
                }
            }
            cells.push(cell);
            cells
        };
        let mut lines = csv.lines();
        let header = split(lines.next().unwrap());
        lines
            .map(|l| {
                let cells = split(l);
                assert_eq!(cells.len(), header.len(), "{l}");
                header.iter().cloned().zip(cells).collect()
            })
            .collect()
    }

    #[test]
    fn every_csv_cell_says_what_the_record_says() {
        let run = sample();
        let rows = parse_csv(&to_csv(&run));
        assert_eq!(rows.len(), run.points.len());
        let want: [&[(&str, &str)]; 2] = [
            &[
                ("transport", "shm-ring"),
                ("pattern", "pingpong"),
                ("msg_size", "64"),
                ("producers", "1"),
                ("consumers", "1"),
                ("wait", "spin"),
                ("pinned", "true"),
                ("oversubscribed", "false"),
                ("messages", "10"),
                ("elapsed_ns", "1000"),
                ("validated", "true"),
                ("error", ""),
                ("latency_mean_ns", "100.0"),
                ("latency_p50_ns", "90"),
                ("latency_p90_ns", "95"),
                ("latency_p99_ns", "120"),
                ("latency_p999_ns", "130"),
                ("latency_max_ns", "140"),
                ("msgs_per_s", "10000000.0"),
                ("bytes_per_s", "640000000.0"),
                ("cpu_ns_per_msg", "200.0"),
                ("batched_mean_ns", "99.0"),
                ("harness_ns_per_msg", "3.0"),
                ("latency_p9999_ns", "135"),
            ],
            &[
                ("transport", "tcp"),
                ("pattern", "stream"),
                ("msg_size", "8"),
                ("wait", "kernel"),
                ("messages", "0"),
                ("validated", "false"),
                (
                    "error",
                    "peer B: expected message 3, got message 4, \"lost\"",
                ),
                ("latency_mean_ns", ""),
                ("latency_p50_ns", ""),
                ("latency_p9999_ns", ""),
                ("msgs_per_s", ""),
                ("cpu_ns_per_msg", ""),
            ],
        ];
        for (row, want) in rows.iter().zip(want) {
            for (col, cell) in want {
                let got = row.iter().find(|(c, _)| c == col);
                assert_eq!(got.map(|(_, v)| v.as_str()), Some(*cell), "column {col}");
            }
        }
        // Every column of the first row was checked, none named twice.
        let mut cols: Vec<_> = rows[0].iter().map(|(c, _)| c.as_str()).collect();
        let mut checked: Vec<_> = want[0].iter().map(|(c, _)| *c).collect();
        cols.sort_unstable();
        checked.sort_unstable();
        assert_eq!(cols, checked);
    }

    #[test]
    fn json_and_csv_stay_in_step_when_the_csv_cannot_be_written() {
        let dir = std::env::temp_dir().join(crate::shm::unique_name("report-step"));
        let path = dir.join("run.json");
        let mut one = sample();
        one.points.truncate(1);
        write_results(&path, &one).unwrap();
        // A directory where the CSV goes: the JSON could be written, the
        // CSV cannot; neither moves on.
        std::fs::remove_file(path.with_extension("csv")).unwrap();
        std::fs::create_dir(path.with_extension("csv")).unwrap();
        let e = write_results(&path, &sample()).unwrap_err();
        assert!(e.to_string().contains("run.csv"), "{e}");
        assert_eq!(read_results(&path).unwrap(), one);
        // With the CSV writable again, both move on together.
        std::fs::remove_dir(path.with_extension("csv")).unwrap();
        write_results(&path, &sample()).unwrap();
        assert_eq!(read_results(&path).unwrap(), sample());
        let csv = std::fs::read_to_string(path.with_extension("csv")).unwrap();
        assert_eq!(parse_csv(&csv).len(), 2);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "staged files left behind: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_keeps_the_old_file_when_it_cannot_write() {
        let dir = std::env::temp_dir().join(crate::shm::unique_name("report-test"));
        let path = dir.join("run.json");
        write_results(&path, &sample()).unwrap();
        assert!(path.with_extension("csv").exists());
        assert_eq!(read_results(&path).unwrap(), sample());
        // A directory where the file should go: the write fails clearly.
        let bad = dir.join("sub");
        std::fs::create_dir_all(bad.join("x.json")).unwrap();
        let e = write_results(&bad.join("x.json"), &sample()).unwrap_err();
        assert!(e.to_string().contains("previous complete file"), "{e}");
        assert!(read_results(&dir.join("missing.json")).is_err());
        // A file of a newer schema is refused, saying so.
        let newer = RunRecord {
            schema_version: crate::record::SCHEMA_VERSION + 1,
            ..sample()
        };
        write_results(&path, &newer).unwrap();
        let e = read_results(&path).unwrap_err();
        assert!(e.contains("newer than this ipcbench reads"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
