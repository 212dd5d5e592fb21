//! The memory budget: every buffer whose size follows from the configuration (frame geometry,
//! scan shape, detectors, binning, threads, buffer pool, reconstruction window, padding and
//! object) is estimated with checked arithmetic and summed *before* anything is allocated, and a
//! job that does not fit is refused at once with an [`Error::Memory`] that names the parameter
//! to change, the size it would need and the limit. The big buffers themselves are then
//! allocated fallibly ([`try_filled`], [`try_with_capacity`]), so an estimate that is short still
//! ends in an error, never in an abort ("memory allocation of … bytes failed").
//!
//! # The budget
//! - Default: **75 % of physical memory** (`MemTotal` in `/proc/meminfo`, or the cgroup's
//!   memory limit when that is lower; 8 GB where neither can be read).
//! - Override, first found wins: the job's `run.memory_budget` (`ptyflow replay
//!   --memory-budget SIZE`; the C API's struct field in bytes, or in JSON a number of bytes or
//!   a SIZE string);
//!   the environment variable `PTYFLOW_MEMORY_BUDGET=SIZE` (every face).
//! - SIZE: bytes (`1500000000`), with a decimal unit (`500M`, `18G`, `18GB`, `1.5T`), a binary
//!   unit (`16GiB`, `512MiB`), a percentage of physical memory (`50%`), or `unlimited` (the
//!   allocations stay fallible).
//!
//! # What is counted
//! Per reduction worker: the statistics of the stage frame (sum and sum of squares, 16 bytes
//! per pixel, plus the binning scratch) and the per-frame values (dose and detector
//! coefficients); the label tables and centre-of-mass masks; the scan-shaped results; the
//! frame readers' decode buffers or the push buffer pool; the thread stacks; and with a
//! reconstruction the object (with its previews), the pattern store (`4·M²` bytes per scan
//! position), the scan positions, the window buffers of every sweep thread and the probe. The
//! estimate is an upper bound of what set-up and the results allocate, not an exact count.
//! The estimates of a job's parts live with the job ([`crate::job`]); this module is the
//! mechanism: the budget, the plan that sums the needs, and the fallible allocations.

use std::fmt;

use crate::{Error, Result};

/// Percentage of physical memory a job may use by default.
pub const DEFAULT_PERCENT: u64 = 75;

/// The environment variable every face reads when the budget is not given explicitly.
pub const ENV_VAR: &str = "PTYFLOW_MEMORY_BUDGET";

/// Physical memory assumed where it cannot be read (not Linux): 8 GB.
pub const FALLBACK_PHYSICAL: u64 = 8_000_000_000;

/// Stack reserved per thread (std's default), counted for every thread a job starts.
const THREAD_STACK: u64 = 2 << 20;

/// How much memory a job may use, where that number came from, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: u64,
    origin: String,
    hint: String,
}

impl MemoryBudget {
    /// A budget of `bytes`; `origin` says where it came from (shown in errors), `hint` how to
    /// change it (e.g. `--memory-budget or PTYFLOW_MEMORY_BUDGET`).
    pub fn new(bytes: u64, origin: impl Into<String>, hint: impl Into<String>) -> Self {
        MemoryBudget {
            bytes,
            origin: origin.into(),
            hint: hint.into(),
        }
    }

    /// No limit (allocations still fail with an error rather than aborting).
    pub fn unlimited() -> Self {
        MemoryBudget::new(u64::MAX, "unlimited", ENV_VAR)
    }

    /// The default: [`DEFAULT_PERCENT`] of [`physical_memory`].
    pub fn default_for_machine(hint: impl Into<String>) -> Self {
        let (physical, what) = match physical_memory() {
            Some(p) => (p, "physical memory"),
            None => (
                FALLBACK_PHYSICAL,
                "assumed memory (physical memory unknown)",
            ),
        };
        MemoryBudget::new(
            physical / 100 * DEFAULT_PERCENT,
            format!("{DEFAULT_PERCENT} % of {} {what}", human(physical)),
            hint,
        )
    }

    /// The budget a face asks for: `given` (a SIZE from the face's own option, named
    /// `option`), else [`ENV_VAR`], else the default. Errors name the option or the variable.
    pub fn resolve(given: Option<&str>, option: &str) -> Result<Self> {
        let hint = format!("`{option}` or {ENV_VAR}");
        if let Some(text) = given {
            let bytes = parse_size(text, option)?;
            return Ok(MemoryBudget::new(bytes, format!("`{option}` {text}"), hint));
        }
        match std::env::var(ENV_VAR) {
            Ok(text) if !text.trim().is_empty() => {
                let bytes = parse_size(&text, ENV_VAR)?;
                Ok(MemoryBudget::new(bytes, format!("{ENV_VAR}={text}"), hint))
            }
            _ => Ok(MemoryBudget::default_for_machine(hint)),
        }
    }

    /// The limit in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the limit came from (`75 % of 24.7 GB physical memory`, `--memory-budget 8G` …).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes == u64::MAX {
            return write!(f, "unlimited ({})", self.origin);
        }
        write!(f, "{} ({})", human(self.bytes), self.origin)
    }
}

/// Physical memory in bytes: `MemTotal` from `/proc/meminfo`, lowered to the memory limit of
/// this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`) when that is smaller.
/// `None` where neither can be read.
pub fn physical_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|kb| kb.checked_mul(1024))
    });
    match (total, cgroup_limit()) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// The memory limit of this process's cgroup, if it has one.
fn cgroup_limit() -> Option<u64> {
    let read = |path: String| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limit = None;
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let found = if controllers.is_empty() {
            read(format!("/sys/fs/cgroup{path}/memory.max"))
        } else if controllers.split(',').any(|c| c == "memory") {
            read(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
                .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes".into()))
        } else {
            None
        };
        // v1 says "no limit" with a number near 2^63.
        if let Some(v) = found.filter(|&v| v < 1 << 62) {
            limit = Some(limit.map_or(v, |l: u64| l.min(v)));
        }
    }
    limit
}

/// Parses a SIZE (see the [module docs](self)); errors name `option`.
pub fn parse_size(text: &str, option: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::param(
            option,
            format!(
                "`{text}`: {why}; expected bytes, a size such as 500M, 18G, 16GiB, a share of \
                 physical memory such as 50%, or `unlimited`"
            ),
        )
    };
    let t = text.trim().to_ascii_lowercase();
    if t == "unlimited" || t == "none" {
        return Ok(u64::MAX);
    }
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
            return Err(bad("a percentage must lie in (0, 100]"));
        }
        let physical = physical_memory().unwrap_or(FALLBACK_PHYSICAL);
        return Ok((physical as f64 * p / 100.0) as u64);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '+'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(bad(&format!("unknown unit `{other}`"))),
    };
    let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
    let bytes = n * unit;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(bad("the budget must be at least 1 byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Ok(u64::MAX);
    }
    Ok(bytes as u64)
}

/// A byte count for people: `512 B`, `3.7 MB`, `10.7 TB` (decimal units).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn human_opt(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "a size beyond 64 bits".into(), human)
}

/// The checked product of `dims` times `elem` bytes; `None` on overflow.
pub fn bytes_of(dims: &[usize], elem: usize) -> Option<u64> {
    dims.iter()
        .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
}

pub(crate) fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a?.checked_add(b?)
}

pub(crate) fn mul(a: Option<u64>, b: u64) -> Option<u64> {
    a?.checked_mul(b)
}

/// The checked product of `dims` (a buffer's element count); an [`Error::Memory`] naming
/// `name` when it overflows.
pub fn checked_len(dims: &[usize], name: &str, what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            Error::memory(
                name,
                format!(
                    "{what}: {} elements overflow the address space",
                    dims.join(" × ")
                ),
                None,
                None,
            )
        })
}

/// An empty vector with room for exactly `len` elements, or an [`Error::Memory`] naming
/// `name` when the allocator refuses (instead of aborting the process).
pub fn try_with_capacity<T>(len: usize, name: &str, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        let need = bytes_of(&[len], std::mem::size_of::<T>());
        Error::memory(
            name,
            format!(
                "{what}: {len} elements ({}) could not be allocated",
                human_opt(need)
            ),
            need,
            None,
        )
    })?;
    Ok(v)
}

/// `vec![value; len]`, allocated fallibly (see [`try_with_capacity`]).
pub fn try_filled<T: Clone>(len: usize, value: T, name: &str, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(len, name, what)?;
    v.resize(len, value);
    Ok(v)
}

/// One buffer (or set of buffers) of a job's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The parameter that sets its size, as the CLI spells it (`--step`, `--scan`, `width ×
    /// height` for the frame geometry, `batch_frames` …).
    pub name: &'static str,
    /// What it is, e.g. `a 1158692 × 1158692 object from 70000 Å steps …`.
    pub what: String,
    /// Bytes; `None` when the size overflows 64 bits.
    pub bytes: Option<u64>,
    /// The smallest piece of it that cannot be split (one frame, one worker's statistics):
    /// when that alone exceeds the budget, its parameter is the one to blame.
    pub unit: Option<(&'static str, String, Option<u64>)>,
}

/// A job's memory estimate: the sum of its [`Need`]s, checked against a [`MemoryBudget`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    needs: Vec<Need>,
}

impl MemoryPlan {
    /// An empty plan.
    pub fn new() -> Self {
        MemoryPlan::default()
    }

    /// Adds a need.
    pub fn add(&mut self, name: &'static str, what: impl Into<String>, bytes: Option<u64>) {
        self.needs.push(Need {
            name,
            what: what.into(),
            bytes,
            unit: None,
        });
    }

    /// Adds a need made of pieces: `unit` is one piece (its parameter, what it is, bytes).
    pub fn add_units(
        &mut self,
        name: &'static str,
        what: impl Into<String>,
        bytes: Option<u64>,
        unit: (&'static str, String, Option<u64>),
    ) {
        self.needs.push(Need {
            name,
            what: what.into(),
            bytes,
            unit: Some(unit),
        });
    }

    /// Appends `other`'s needs.
    pub fn extend(&mut self, other: MemoryPlan) {
        self.needs.extend(other.needs);
    }

    /// The needs, in the order they were added.
    pub fn needs(&self) -> &[Need] {
        &self.needs
    }

    /// Total bytes; `None` when the sum overflows 64 bits.
    pub fn total(&self) -> Option<u64> {
        self.needs
            .iter()
            .try_fold(0u64, |a, n| a.checked_add(n.bytes?))
    }

    /// `Ok` when the total fits `budget`; otherwise an [`Error::Memory`] naming the parameter
    /// of the largest need, or of its indivisible piece when that alone exceeds the budget.
    pub fn check(&self, budget: &MemoryBudget) -> Result<()> {
        let total = self.total();
        if total.is_some_and(|t| t <= budget.bytes) {
            return Ok(());
        }
        // Each need speaks through its indivisible piece when that alone exceeds the budget;
        // the largest (an overflow first) names the parameter.
        let over = |b: &Option<u64>| b.is_none_or(|b| b > budget.bytes);
        let Some((name, what, bytes)) = self
            .needs
            .iter()
            .map(|n| match &n.unit {
                Some((name, what, bytes)) if over(bytes) => (*name, what, *bytes),
                _ => (n.name, &n.what, n.bytes),
            })
            .max_by_key(|c| c.2.unwrap_or(u64::MAX))
        else {
            return Ok(());
        };
        let whole = match (total, bytes) {
            (Some(t), _) if self.needs.len() > 1 => format!("; the job needs {} in all", human(t)),
            (None, Some(_)) => "; the job's total overflows 64 bits".into(),
            _ => String::new(),
        };
        Err(Error::memory(
            name,
            format!(
                "{what} ({}{whole}), more than the memory budget of {}; change the job, or \
                 the budget with {}",
                human_opt(bytes),
                budget,
                budget.hint
            ),
            total,
            Some(budget.bytes),
        ))
    }
}

/// The stacks of `threads` threads.
pub fn thread_stacks(threads: usize, name: &'static str) -> MemoryPlan {
    let mut plan = MemoryPlan::new();
    plan.add(
        name,
        format!("the stacks of {threads} thread(s)"),
        (threads as u64).checked_mul(THREAD_STACK),
    );
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_unit() {
        let p = |s: &str| parse_size(s, "--memory-budget");
        assert_eq!(p("1500").unwrap(), 1500);
        assert_eq!(p("500M").unwrap(), 500_000_000);
        assert_eq!(p("18G").unwrap(), 18_000_000_000);
        assert_eq!(p("18 GB").unwrap(), 18_000_000_000);
        assert_eq!(p("1.5t").unwrap(), 1_500_000_000_000);
        assert_eq!(p("16GiB").unwrap(), 16 << 30);
        assert_eq!(p("unlimited").unwrap(), u64::MAX);
        assert!(p("50%").unwrap() > 0);
        for bad in ["", "0", "-1G", "12 parsecs", "150%", "0%", "nan", "1e400"] {
            let e = p(bad).expect_err(bad).to_string();
            assert!(e.contains("--memory-budget"), "{bad}: {e}");
        }
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(3_700_000), "3.7 MB");
        assert_eq!(human(10_740_000_000_000), "10.7 TB");
        assert_eq!(human(u64::MAX), "18.4 EB");
    }

    #[test]
    fn physical_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let p = physical_memory().expect("MemTotal");
            assert!(p > 100_000_000, "{p}");
        }
    }

    #[test]
    fn the_check_names_the_largest_need_or_the_piece_that_cannot_fit() {
        let budget = MemoryBudget::new(1000, "a test", "--memory-budget");
        let mut plan = MemoryPlan::new();
        plan.add("--scan", "the store", Some(600));
        plan.add("--step", "the object", Some(300));
        assert!(plan.check(&budget).is_ok());
        plan.add("--step", "a second object", Some(500));
        let e = plan.check(&budget).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("parameter `--scan`: the store (600 B; the job needs 1.4 kB in all), more than the memory budget of 1.0 kB (a test)"), "{msg}");
        assert!(matches!(
            e,
            Error::Memory {
                needed: Some(1400),
                budget: Some(1000),
                ..
            }
        ));
        plan.add_units(
            "--threads",
            "per-worker tables",
            Some(4000),
            ("width × height", "one table".into(), Some(2000)),
        );
        let msg = plan.check(&budget).unwrap_err().to_string();
        assert!(
            msg.starts_with("parameter `width × height`: one table (2.0 kB;"),
            "{msg}"
        );
        plan.add("--scan", "an overflow", None);
        let msg = plan.check(&budget).unwrap_err().to_string();
        assert!(msg.contains("an overflow (a size beyond 64 bits)"), "{msg}");
    }

    #[test]
    fn fallible_allocations_return_errors() {
        let e = try_filled(usize::MAX / 2, 0u64, "--scan", "the store").unwrap_err();
        assert!(e.to_string().contains("--scan") && e.to_string().contains("the store"));
        assert!(checked_len(&[usize::MAX, 2], "--scan", "x").is_err());
        assert_eq!(try_filled(3, 7u8, "n", "w").unwrap(), vec![7, 7, 7]);
    }
}
