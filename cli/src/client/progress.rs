//! Progress of long work (uploads): objects, bytes and rate. On a terminal an indicatif bar on
//! stderr; otherwise a plain line on stderr every few seconds and one at the end, so CI logs stay
//! readable.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, ProgressBar, ProgressStyle};

/// How often a plain progress line is printed.
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);
const BAR_TEMPLATE: &str =
    "{prefix:>9} [{elapsed_precise}] {wide_bar} {msg} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})";

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bar,
    Plain,
    Hidden,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Plain
        }
    }
}

/// Counts objects and bytes done out of a known total.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total_objects: u64,
    total_bytes: u64,
    objects: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    /// When the last plain line was printed; `None` when not printing plain lines.
    last_line: Option<Mutex<Instant>>,
}

impl Progress {
    pub fn new(mode: ProgressMode, label: &str, total_objects: u64, total_bytes: u64) -> Self {
        let started = Instant::now();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let style = ProgressStyle::with_template(BAR_TEMPLATE).expect("valid template").progress_chars("=> ");
            let bar = ProgressBar::new(total_bytes).with_style(style).with_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let last_line = (mode == ProgressMode::Plain).then(|| Mutex::new(started));
        let progress = Self {
            label: label.to_owned(),
            total_objects,
            total_bytes,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started,
            bar,
            last_line,
        };
        progress.update_message();
        progress
    }

    /// Records finished objects.
    pub fn inc(&self, objects: u64, bytes: u64) {
        self.objects.fetch_add(objects, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            self.update_message();
        }
        if let Some(last_line) = &self.last_line {
            let mut last = last_line.lock().expect("progress lock");
            if last.elapsed() >= PLAIN_INTERVAL {
                *last = Instant::now();
                eprintln!("{}", self.line());
            }
        }
    }

    /// Ends the display with a final line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            self.update_message();
            bar.finish();
        }
        if self.last_line.is_some() {
            eprintln!("{}", self.line());
        }
    }

    fn update_message(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}/{} objects", self.objects.load(Ordering::Relaxed), self.total_objects));
        }
    }

    /// `uploading: 12/40 objects, 1.20 MiB/4.00 MiB, 3.40 MiB/s`.
    pub fn line(&self) -> String {
        let (objects, bytes) = (self.objects.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed));
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (bytes as f64 / seconds) as u64;
        format!(
            "{}: {objects}/{} objects, {}/{}, {}/s",
            self.label,
            self.total_objects,
            BinaryBytes(bytes),
            BinaryBytes(self.total_bytes),
            BinaryBytes(rate)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_objects_and_bytes_from_parallel_uploads() {
        let progress = Progress::new(ProgressMode::Hidden, "uploading", 4, 3 * 1024 * 1024);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| progress.inc(2, 1536 * 1024));
            }
        });
        let line = progress.line();
        assert!(line.starts_with("uploading: 4/4 objects, 3.00 MiB/3.00 MiB, "), "{line}");
        assert!(line.ends_with("/s"), "{line}");
        progress.finish();
    }

    #[test]
    fn the_bar_template_is_valid() {
        let progress = Progress::new(ProgressMode::Bar, "uploading", 2, 10);
        progress.inc(1, 5);
        progress.finish();
        assert!(progress.bar.as_ref().is_some_and(ProgressBar::is_finished));
    }
}
