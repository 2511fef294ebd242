//! One line per figure: what, value, goal, the floor and the ratio to it, verdict.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// A figure without a goal of its own (context for another one).
    Info,
}

#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub value: String,
    pub goal: String,
    pub floor: Option<String>,
    pub ratio: Option<f64>,
    pub verdict: Verdict,
}

impl Figure {
    pub fn new(name: &str, value: String, goal: &str, pass: Option<bool>) -> Figure {
        Figure {
            name: name.to_string(),
            value,
            goal: goal.to_string(),
            floor: None,
            ratio: None,
            verdict: match pass {
                Some(true) => Verdict::Pass,
                Some(false) => Verdict::Miss,
                None => Verdict::Info,
            },
        }
    }

    pub fn info(name: &str, value: String) -> Figure {
        Figure::new(name, value, "-", None)
    }

    pub fn floor(mut self, floor: String, ratio: f64) -> Figure {
        self.floor = Some(floor);
        self.ratio = Some(ratio);
        self
    }
}

pub const HEADER: (&str, &str, &str, &str, &str, &str) =
    ("figure", "value", "goal", "floor", "ratio", "verdict");

pub fn print_header() {
    let (a, b, c, d, e, f) = HEADER;
    println!("{a:<44} {b:>22} {c:>16} {d:>10} {e:>7}  {f}");
    println!("{}", "-".repeat(44 + 22 + 16 + 10 + 7 + 13));
}

pub fn print(f: &Figure) {
    let verdict = match f.verdict {
        Verdict::Pass => "PASS",
        Verdict::Miss => "MISS",
        Verdict::Info => "info",
    };
    let floor = f.floor.clone().unwrap_or_else(|| "-".into());
    let ratio = f
        .ratio
        .filter(|r| r.is_finite())
        .map_or("-".to_string(), |r| format!("{r:.2}x"));
    println!(
        "{:<44} {:>22} {:>16} {:>10} {:>7}  {verdict}",
        f.name, f.value, f.goal, floor, ratio
    );
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

/// Median and 90th percentile (nearest rank) of a sample.
pub fn median_p90(sample: &[Duration]) -> (Duration, Duration) {
    let mut s = sample.to_vec();
    s.sort();
    if s.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2
    };
    let rank = ((s.len() as f64) * 0.9).ceil() as usize;
    (median, s[rank.clamp(1, s.len()) - 1])
}
