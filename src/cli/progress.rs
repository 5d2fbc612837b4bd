//! What a run shows while it goes: on a terminal, one bar over the whole
//! plan (every family, then the Python baseline's points as the script
//! reports them) with the current point, the time elapsed and an ETA;
//! elsewhere, plain lines. Every point measured is printed as one line
//! either way.
//!
//! The bar advances by each point's estimated time ([`estimate`]), not by
//! its count: points take from a millisecond to a minute. The ETA is the
//! estimate of what is left, scaled by how this run has kept to its
//! estimates so far.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over a plan of points whose estimated durations are given.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Each point's estimate, seconds: the plan's, then Python's.
    estimates: Vec<f64>,
    /// Estimated seconds of the points finished.
    done: f64,
    t0: Instant,
}

impl Progress {
    /// A bar on standard error when it is a terminal (`tty`), else none.
    pub fn new(estimates: Vec<f64>, tty: bool) -> Progress {
        let bar = tty.then(|| {
            let total_ms = (estimates.iter().sum::<f64>() * 1e3).max(1.0) as u64;
            let b = ProgressBar::with_draw_target(Some(total_ms), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:28.cyan/blue}] {prefix} {wide_msg}",
                )
                .expect("a valid template")
                .progress_chars("#>."),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            estimates,
            done: 0.0,
            t0: Instant::now(),
        }
    }

    fn of(&self) -> usize {
        self.estimates.len()
    }

    /// The time left, as estimated now.
    fn eta(&self) -> Duration {
        let left: f64 = self.estimates.iter().sum::<f64>() - self.done;
        let elapsed = self.t0.elapsed().as_secs_f64();
        // Until a few seconds' worth is done, the estimates as they are.
        let pace = if self.done > 5.0 {
            (elapsed / self.done).clamp(0.25, 4.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((left * pace).max(0.0))
    }

    /// Point `index` (of the whole plan) starts; `what` names it (its
    /// columns' padding is dropped on the bar).
    pub fn starting(&mut self, index: usize, what: &str) {
        if let Some(b) = &self.bar {
            let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
            b.set_prefix(format!("{}/{}", index + 1, self.of()));
            b.set_message(format!("ETA {} | {what}", human_duration(self.eta())));
        }
    }

    /// Point `index` finished; `line` says what it measured.
    pub fn finished(&mut self, index: usize, line: &str) {
        self.done += self.estimates.get(index).copied().unwrap_or(0.0);
        let text = format!("[{:>4}/{}] {line}", index + 1, self.of());
        match &self.bar {
            Some(b) => {
                b.set_position((self.done * 1e3) as u64);
                b.println(text);
                b.set_message(format!("ETA {}", human_duration(self.eta())));
            }
            None => eprintln!("{text}"),
        }
    }

    /// A line that is not a point's, printed above the bar.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// The run is over: the bar goes.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `42s`, `3m05s` or `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
