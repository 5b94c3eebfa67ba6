//! Shared pieces of Wire's benchmarks: machine description and this machine's physical limits
//! (raw O_DIRECT write + fdatasync bandwidth and latency, memory scan bandwidth), measured in
//! the same run as the engine so results compare as ratios.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One line describing the CPU, core count, kernel and the filesystem under `dir`.
pub fn machine_description(dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, Linux {}, data on {}",
        kernel.trim(),
        filesystem_of(dir)
    )
}

fn filesystem_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (device, point, fs) = (parts.next()?, parts.next()?, parts.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{fs} ({device} at {point})")))
        })
        .max()
        .map_or_else(|| "unknown filesystem".into(), |(_, text)| text)
}

/// A heap buffer whose usable part starts on a `align`-byte boundary, for O_DIRECT.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` bytes aligned to `align`, filled with a repeating non-zero pattern.
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        let mut storage = vec![0u8; len + align];
        let start = storage.as_ptr().align_offset(align);
        for (i, byte) in storage.iter_mut().enumerate() {
            *byte = (i % 251) as u8 + 1;
        }
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

fn open_direct(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Appends `size`-byte blocks to a file with O_DIRECT, each followed by `fdatasync`: the raw
/// durable-append a WAL is measured against, one call at a time so it can be interleaved with
/// the WAL's own appends and see the same disk conditions.
pub struct RawSyncWriter {
    file: File,
    buf: AlignedBuf,
    position: u64,
}

impl RawSyncWriter {
    /// A writer of `size`-byte blocks into a new file at `path`.
    pub fn create(path: &Path, size: usize) -> std::io::Result<RawSyncWriter> {
        Ok(RawSyncWriter {
            file: open_direct(path)?,
            buf: AlignedBuf::new(size, 4096),
            position: 0,
        })
    }

    /// Writes the next block and syncs it; returns how long that took.
    pub fn append(&mut self) -> std::io::Result<Duration> {
        let started = Instant::now();
        self.file.write_all_at(self.buf.as_slice(), self.position)?;
        self.file.sync_data()?;
        self.position += self.buf.as_slice().len() as u64;
        Ok(started.elapsed())
    }
}

/// Bytes per second of reading every 8-byte word of `bytes` (a memory scan): the ceiling for
/// anything that must look at each byte of page-cached data once.
pub fn memory_scan_bandwidth(bytes: &[u8], rounds: usize) -> f64 {
    let started = Instant::now();
    let mut sum = 0u64;
    for _ in 0..rounds {
        for word in bytes.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            sum = sum.wrapping_add(u64::from_le_bytes(w));
        }
    }
    std::hint::black_box(sum);
    (bytes.len() * rounds) as f64 / started.elapsed().as_secs_f64()
}

/// A histogram of microseconds from 1 µs to 100 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 100_000_000, 3) {
        Ok(histogram) => histogram,
        Err(err) => unreachable!("constant histogram bounds are valid: {err}"),
    }
}

/// Records `elapsed` in microseconds, clamped into the histogram's range.
pub fn record_us(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let us = (elapsed.as_micros() as u64).clamp(1, 100_000_000);
    histogram.saturating_record(us);
}

/// `p50=… p99=… p99.9=… max=…` in microseconds.
pub fn percentiles_us(histogram: &Histogram<u64>) -> String {
    format!(
        "p50={}us p99={}us p99.9={}us max={}us",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    )
}

/// Formats bytes per second as MB/s (10^6).
pub fn mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.0} MB/s", bytes_per_s / 1e6)
}

/// The calling thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`), in seconds; 0 if the
/// clock cannot be read.
pub fn thread_cpu_s() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| std::time::Duration::from(t).as_secs_f64())
        .unwrap_or(0.0)
}

/// The cargo command that runs bench `name` with the profile this build used: `cargo bench`
/// for an optimised build, `cargo test --bench` for the test profile (debug assertions on), so
/// a printed figure says how it was built.
pub fn cargo_command(name: &str) -> String {
    let cargo = if cfg!(debug_assertions) {
        "cargo test"
    } else {
        "cargo bench"
    };
    format!("{cargo} -p wire-bench --bench {name}")
}

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("the bench crate has no parent directory"))?
        .to_path_buf())
}

/// A number as `wire run`'s summary prints it (`12.3M`, `4.5k`, `812`).
pub fn summary_number(text: &str) -> f64 {
    let text = text.trim();
    let (digits, scale) = match text.chars().last() {
        Some('k') => (&text[..text.len() - 1], 1e3),
        Some('M') => (&text[..text.len() - 1], 1e6),
        Some('G') => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    digits.parse::<f64>().unwrap_or(0.0) * scale
}

/// The events/s of a `wire run` summary line `N events in T s: R events/s (…)`, or `None` for
/// any other line.
pub fn summary_events_per_s(line: &str) -> Option<f64> {
    if !line.contains(" events in ") {
        return None;
    }
    let (_, rest) = line.split_once(": ")?;
    Some(summary_number(rest.split(" events/s").next().unwrap_or("")))
}

/// `12.30M`, `4.5k`, `812`.
pub fn human(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// The command line of an end-to-end bench: `--test` (or `--smoke`) for a seconds-long pass,
/// `--dir DIR` for its files (made absolute), cargo's own `--bench` (ignored), and `--NAME
/// VALUE` for each number the bench declares. Anything else is an error naming it.
pub struct BenchArgs {
    /// `--test`: a seconds-long pass for CI, not a measurement.
    pub smoke: bool,
    /// Where the bench writes its files.
    pub dir: std::path::PathBuf,
    values: Vec<(&'static str, u64)>,
}

impl BenchArgs {
    /// Parses the process's arguments; `numbers` are the bench's `--NAME` values with their
    /// defaults, `dir` the default of `--dir`.
    pub fn parse(dir: &str, numbers: &[(&'static str, u64)]) -> anyhow::Result<BenchArgs> {
        BenchArgs::parse_from(std::env::args().skip(1), dir, numbers)
    }

    /// [`BenchArgs::parse`] of `args` (without the program name).
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        dir: &str,
        numbers: &[(&'static str, u64)],
    ) -> anyhow::Result<BenchArgs> {
        use anyhow::Context;
        let mut parsed = BenchArgs {
            smoke: false,
            dir: std::path::PathBuf::from(dir),
            values: numbers.to_vec(),
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--test" | "--smoke" => parsed.smoke = true,
                "--bench" => {}
                "--dir" => parsed.dir = value()?.into(),
                flag => {
                    let name = flag.strip_prefix("--").unwrap_or(flag);
                    let Some(slot) = parsed.values.iter_mut().find(|(n, _)| *n == name) else {
                        anyhow::bail!("unknown argument {flag}");
                    };
                    let text = value()?;
                    slot.1 = text
                        .parse()
                        .with_context(|| format!("{flag} {text}: not a whole number"))?;
                }
            }
        }
        parsed.dir = std::path::absolute(&parsed.dir)?;
        Ok(parsed)
    }

    /// The value of `--NAME` (its default unless given); at most `smoke_max` with `--test`.
    ///
    /// # Panics
    /// If the bench did not declare `name`: a bug in the bench, not in its input.
    pub fn number(&self, name: &str, smoke_max: u64) -> u64 {
        let value = self
            .values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("the bench declares no --{name}"));
        if self.smoke {
            value.min(smoke_max)
        } else {
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BenchArgs;

    fn parse(args: &[&str]) -> anyhow::Result<BenchArgs> {
        let args = args.iter().map(|a| a.to_string());
        BenchArgs::parse_from(args, "target/x", &[("events", 1000), ("rows", 5)])
    }

    #[test]
    fn bench_args_take_declared_numbers_and_cap_them_in_a_smoke_pass() {
        let args = parse(&["--bench", "--events", "70", "--dir", "/tmp/b"]).expect("parses");
        assert_eq!((args.number("events", 10), args.number("rows", 1)), (70, 5));
        assert_eq!(args.dir, std::path::PathBuf::from("/tmp/b"));
        let smoke = parse(&["--test", "--events", "70"]).expect("parses");
        assert_eq!(
            (smoke.number("events", 10), smoke.number("rows", 1)),
            (10, 1)
        );
    }

    #[test]
    fn bench_args_name_what_they_refuse() {
        let err = |args: &[&str]| parse(args).err().map(|e| format!("{e:#}"));
        assert_eq!(
            err(&["--evnets", "3"]).as_deref(),
            Some("unknown argument --evnets")
        );
        assert_eq!(err(&["--rows"]).as_deref(), Some("--rows needs a value"));
        assert!(err(&["--rows", "x"]).is_some_and(|e| e.contains("--rows x: not a whole number")));
    }
}
