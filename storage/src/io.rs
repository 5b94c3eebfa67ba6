//! glommio executors sized for this machine's locked-memory limit.
//!
//! glommio registers its IO buffers with io_uring, which pins them against `RLIMIT_MEMLOCK`.
//! We raise the soft limit to the hard limit where allowed and size `io_memory` to fit what we
//! got, so a default `ulimit -l` of 8 MiB works, and a tiny one fails with a clear message.

use std::io;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

/// IO memory each executor asks for when the limit allows it.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 4 << 20;
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

/// A builder for an executor with io memory sized for `executors` executors in this process.
pub fn executor_builder(
    placement: Placement,
    executors: usize,
) -> io::Result<LocalExecutorBuilder> {
    let io_memory = io_memory_per_executor(executors)?;
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
