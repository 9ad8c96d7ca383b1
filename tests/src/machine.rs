//! What machine a benchmark ran on, for the line under its table.

use anyhow::Context;

use crate::tools::{run, Isolated};

/// Cores, CPU model and the reference tools' versions.
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub flatpak: String,
    pub ostree: String,
}

impl Machine {
    pub fn detect() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().context("failed to count the cores")?.get();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("failed to read /proc/cpuinfo")?;
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let iso = Isolated::new()?;
        let flatpak = run(iso.flatpak().arg("--version"))?.trim().to_owned();
        let ostree = run(iso.ostree().arg("--version"))?;
        let ostree = ostree.lines().find_map(|l| l.trim().strip_prefix("Version:")).unwrap_or("?").trim();
        Ok(Self { cores, cpu, flatpak, ostree: format!("libostree {}", ostree.trim_matches('\'')) })
    }
}
