//! glommio executors sized for this machine's locked-memory limit.
//!
//! glommio registers its IO buffers with io_uring, which pins them against `RLIMIT_MEMLOCK`.
//! We raise the soft limit to the hard limit where allowed and size `io_memory` to fit what we
//! got, so a default `ulimit -l` of 8 MiB works, and a tiny one fails with a clear message.
//! A process with `CAP_IPC_LOCK` (or no memlock limit) registers more, so that the WAL's
//! staging buffers always come from registered, already-faulted memory.

use std::io;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

/// IO memory each executor asks for when the memlock limit allows it.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 4 << 20;
/// IO memory each executor asks for when locking is not limited (`CAP_IPC_LOCK`, or an
/// unlimited `RLIMIT_MEMLOCK`): enough that WAL staging never spills to fresh heap pages.
pub const IO_MEMORY_BYTES_UNLIMITED: usize = 32 << 20;
/// Below this much lockable memory per executor we refuse to start.
pub const IO_MEMORY_BYTES_MIN: usize = 256 << 10;

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit and returns the soft limit now in force.
pub fn raise_memlock_limit() -> io::Result<u64> {
    let (soft, hard) = rlimit::Resource::MEMLOCK.get()?;
    if soft < hard {
        rlimit::Resource::MEMLOCK.set(hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// The io_memory each of `executors` executors may register within the memlock limit.
pub fn io_memory_per_executor(executors: usize) -> io::Result<usize> {
    let limit = raise_memlock_limit()?;
    if limit == rlimit::INFINITY || has_cap_ipc_lock() {
        return Ok(IO_MEMORY_BYTES_UNLIMITED);
    }
    let executors = executors.max(1) as u64;
    // Leave a quarter of the limit for the rings themselves and anything else that locks memory.
    let share = (limit.saturating_mul(3) / 4) / executors;
    let share = usize::try_from(share)
        .unwrap_or(usize::MAX)
        .min(IO_MEMORY_BYTES_DEFAULT);
    if share < IO_MEMORY_BYTES_MIN {
        return Err(io::Error::other(format!(
            "RLIMIT_MEMLOCK is {limit} bytes, too little for {executors} io_uring executors \
             (each needs at least {IO_MEMORY_BYTES_MIN} bytes); raise it with `ulimit -l` or \
             LimitMEMLOCK= in the systemd unit"
        )));
    }
    Ok(share)
}

/// Whether this process may lock memory beyond `RLIMIT_MEMLOCK` (root usually may).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// A builder for an executor with io memory sized for `executors` executors in this process.
pub fn executor_builder(
    placement: Placement,
    executors: usize,
) -> io::Result<LocalExecutorBuilder> {
    executor_builder_capped(placement, executors, usize::MAX)
}

/// Like [`executor_builder`], but registers at most `io_memory_max` bytes (never less than
/// [`IO_MEMORY_BYTES_MIN`]). The memory is allocated, faulted in and locked when the executor
/// starts, so an executor that does little direct IO (no WAL) should ask for little: it is
/// resident memory whether used or not.
pub fn executor_builder_capped(
    placement: Placement,
    executors: usize,
    io_memory_max: usize,
) -> io::Result<LocalExecutorBuilder> {
    let io_memory = io_memory_per_executor(executors)?.min(io_memory_max.max(IO_MEMORY_BYTES_MIN));
    Ok(LocalExecutorBuilder::new(placement)
        .io_memory(io_memory)
        .ring_depth(128))
}

/// An unpinned executor on the calling thread, for tools, tests and single-threaded benches.
pub fn local_executor() -> io::Result<LocalExecutor> {
    executor_builder(Placement::Unbound, 1)?
        .make()
        .map_err(io::Error::from)
}
