//! What Linux says about a process: resident memory, CPU time, wake-ups (`/proc`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

/// Resident and peak resident memory, in KiB (`VmRSS`, `VmHWM` of `/proc/<pid>/status`).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))?;
        let kib = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kib)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU used so far by a process and how often its threads went to sleep and were woken.
#[derive(Clone, Debug)]
pub struct Cpu {
    /// utime + stime of `/proc/<pid>/stat`, in clock ticks (all threads, live and exited).
    pub ticks: u64,
    /// Per live thread: time on CPU in ns (`schedstat`) and voluntary context switches (each
    /// one a sleep, so a wake-up).
    pub threads: BTreeMap<String, (u64, u64)>,
}

impl Cpu {
    /// On-CPU nanoseconds and wake-ups from `self` to `later`, over the threads alive at
    /// `later` (a thread born in between counts from zero; one that died is not seen).
    pub fn since(&self, earlier: &Cpu) -> (u64, u64) {
        let mut ns = 0;
        let mut wakeups = 0;
        for (tid, (n, w)) in &self.threads {
            let (n0, w0) = earlier.threads.get(tid).copied().unwrap_or((0, 0));
            ns += n.saturating_sub(n0);
            wakeups += w.saturating_sub(w0);
        }
        (ns, wakeups)
    }
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

pub fn cpu(pid: u32) -> anyhow::Result<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let f = stat_fields(&stat)?;
    // Fields after the command: state(3) ppid(4) ... utime(14) stime(15); f[0] is field 3.
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let dir = task.path();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let switches = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (ns, switches),
        );
    }
    Ok(Cpu { ticks, threads })
}

/// The fields of `/proc/<pid>/stat` after `(comm)`, starting with the state.
fn stat_fields(stat: &str) -> anyhow::Result<Vec<&str>> {
    let Some(close) = stat.rfind(')') else {
        bail!("unreadable /proc stat line {stat:?}");
    };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if f.len() < 20 {
        bail!("short /proc stat line {stat:?}");
    }
    Ok(f)
}

/// The live child of this process running `exe` (the plugin the emulator started). The
/// emulator does not expose its plugin's pid, so it is found the way `ps` would.
pub fn child_running(exe: &Path) -> anyhow::Result<u32> {
    let me = std::process::id().to_string();
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let mut found: Vec<(u64, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Ok(f) = stat_fields(&stat) else { continue };
        if f[1] != me || f[0] == "Z" {
            continue;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        if target == exe {
            // Field 22, the start time: the newest one is the current plugin.
            found.push((f[19].parse().unwrap_or(0), pid));
        }
    }
    found.sort();
    found
        .last()
        .map(|(_, pid)| *pid)
        .with_context(|| format!("no running child process {}", exe.display()))
}
