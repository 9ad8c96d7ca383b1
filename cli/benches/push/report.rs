//! The markdown table.

use std::fmt::Write as _;

use flatbucket_tests::machine::Machine;

use crate::{median, Inputs, Phase, Results, Samples, Workload, MIB, RUNS};

impl Workload {
    fn label(self, inputs: &Inputs) -> String {
        match self {
            Workload::BigV1 => format!(
                "Big app v1 ({} files, {:.0} MiB, empty repo)",
                thousands(inputs.app.files),
                inputs.app.bytes as f64 / MIB
            ),
            Workload::BigV2 => format!(
                "Big app v2 ({} files / {:.1} MiB changed, onto v1)",
                thousands(inputs.change.files),
                inputs.change.bytes as f64 / MIB
            ),
            Workload::Small => "Small app (fixture runtime + app)".to_owned(),
            Workload::SmallDuringDelta => "Small app, while the big app's static delta is generated".to_owned(),
            Workload::BigDelta => "Big app v1 static delta from scratch".to_owned(),
            Workload::BigPull => "Big app v2 served from `/repo/`".to_owned(),
        }
    }
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Upload => "upload (`push`)",
            Phase::Commit => "commit (`commit --wait`)",
            Phase::Publish => "publish (`publish --wait`)",
            Phase::CommitAndPublish => "commit + publish",
            Phase::EndToEnd => "end to end (`push --commit --publish --wait`, fresh build)",
            Phase::DeltaGeneration => "generation (publish → delta index in the repo)",
            Phase::Pull => "`ostree pull --disable-static-deltas`",
            Phase::PeakRss => "server peak RSS (VmHWM)",
            // Shown inside the peak RSS row.
            Phase::StartRss => "server RSS at the workload's start",
            Phase::UploadPeakRss => "server peak RSS during upload",
            Phase::CommitPeakRss => "server peak RSS during commit",
            Phase::PublishPeakRss => "server peak RSS during publish",
        }
    }
}

/// The phases shown for each workload, in table order.
const PHASES: [Phase; 8] = [
    Phase::Upload,
    Phase::Commit,
    Phase::Publish,
    Phase::CommitAndPublish,
    Phase::EndToEnd,
    Phase::DeltaGeneration,
    Phase::Pull,
    Phase::PeakRss,
];

/// The workloads in table order.
const WORKLOADS: [Workload; 6] = [
    Workload::BigV1,
    Workload::BigV2,
    Workload::Small,
    Workload::SmallDuringDelta,
    Workload::BigDelta,
    Workload::BigPull,
];

pub fn report(machine: &Machine, inputs: &Inputs, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n| Workload | phase | flatbucket | reference | ratio |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for workload in WORKLOADS {
        for phase in PHASES {
            if let Some(row) = row(workload, phase, results) {
                let _ = writeln!(out, "| {} | {} | {row} |", workload.label(inputs), phase.label());
            }
        }
    }
    let _ = writeln!(
        out,
        "\nMachine: {} cores ({}), {}; {}, {}. Median of {RUNS} runs each, fresh servers and repos per run, \
         warm page cache. ratio = reference time / flatbucket time (above 1: flatbucket is faster). \
         Server RSS when idle after start: {:.1} MiB; peak RSS rows add, in MiB, the RSS when the workload \
         began and each phase's own peak (VmHWM reset through /proc/<pid>/clear_refs before each).",
        machine.cores,
        machine.cpu,
        std::env::consts::ARCH,
        machine.flatpak,
        machine.ostree,
        median(&results.idle_rss) / MIB,
    );
    let _ = writeln!(
        out,
        "Reference: commit = `flatpak build-commit-from --untrusted --force --disable-fsync` into a fresh build repo \
         (parent: the main repo) + `flatpak build-update-repo` of it; publish = `flatpak build-commit-from --force` \
         into the main repo + `flatpak build-update-repo` of it; end to end = commit + publish, with no upload; \
         static delta = `ostree static-delta generate --empty --min-fallback-size=1` alone (ours also includes \
         the worker's pickup, copying the closure out and storing the delta); serving = `python3 -m http.server` \
         on the server's repository directory, pulled the same way right before."
    );
    out
}

/// The figures of one row (`flatbucket | reference | ratio`), if flatbucket measured the phase.
fn row(workload: Workload, phase: Phase, results: &Results) -> Option<String> {
    let ours = results.ours.median(workload, phase)?;
    if phase == Phase::PeakRss {
        return Some(format!("{} | — | —", rss_cell(workload, ours, &results.ours)));
    }
    // flat-manager's upload has no stand-in; its end to end is at least its commit + publish.
    let (reference, note) = match phase {
        Phase::EndToEnd => (results.reference.median(workload, Phase::CommitAndPublish), " (commit + publish only)"),
        Phase::DeltaGeneration => (results.reference.median(workload, phase), " (`ostree static-delta generate`)"),
        Phase::Pull => (results.reference.median(workload, phase), " (`python3 -m http.server`)"),
        _ => (results.reference.median(workload, phase), ""),
    };
    Some(match reference {
        Some(theirs) => format!("{} | {}{note} | {:.2}×", seconds(ours), seconds(theirs), theirs / ours),
        None => format!("{} | — | —", seconds(ours)),
    })
}

/// The workload's peak RSS, with what the server held at its start and, when measured, each
/// phase's own peak.
fn rss_cell(workload: Workload, peak: f64, samples: &Samples) -> String {
    let mib = |phase| samples.median(workload, phase).map(|bytes| format!("{:.0}", bytes / MIB));
    let mut details = Vec::new();
    if let Some(start) = mib(Phase::StartRss) {
        details.push(format!("{start} at start"));
    }
    for (phase, name) in
        [(Phase::UploadPeakRss, "upload"), (Phase::CommitPeakRss, "commit"), (Phase::PublishPeakRss, "publish")]
    {
        if let Some(value) = mib(phase) {
            details.push(format!("{name} {value}"));
        }
    }
    match details.is_empty() {
        true => format!("{:.1} MiB", peak / MIB),
        false => format!("{:.1} MiB ({})", peak / MIB, details.join(", ")),
    }
}

pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// `10000` as `10,000`.
fn thousands(n: usize) -> String {
    let reversed: Vec<char> = n.to_string().chars().rev().collect();
    let groups: Vec<String> = reversed.chunks(3).rev().map(|group| group.iter().rev().collect()).collect();
    groups.join(",")
}
