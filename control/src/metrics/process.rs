//! This process's memory and CPU, read from `/proc/self` at each scrape.

/// What `/proc/self` tells; a figure that cannot be read is left out of the scrape.
#[derive(Debug, Default)]
pub(super) struct Usage {
    /// Resident set size (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux architecture
/// Wire runs on).
const USER_HZ: f64 = 100.0;

impl Usage {
    /// Reads the figures now.
    pub fn read() -> Usage {
        Usage {
            rss_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| rss_bytes(&status)),
            cpu_seconds: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|stat| cpu_seconds(&stat)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
        }
    }
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `utime + stime` of a `/proc/PID/stat` text, in seconds. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its closing `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::{cpu_seconds, rss_bytes};

    #[test]
    fn reads_rss_and_cpu_from_proc_texts() {
        assert_eq!(rss_bytes("Name:\twire\nVmRSS:\t  2048 kB\n"), Some(2 << 20));
        let stat = "12 (wire (a) b) S 1 12 12 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let usage = super::Usage::read();
        assert!(usage.rss_bytes.is_some_and(|b| b > 0));
        assert!(usage.cpu_seconds.is_some());
        assert!(usage.open_fds.is_some_and(|n| n > 0));
    }
}
