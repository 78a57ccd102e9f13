//! The descriptor limit (RLIMIT_NOFILE) at start and on reload: the
//! max_connections that fits it, and each worker's descriptor budget
//! (`http::FdBudget`, which HTTP/2 streams take slots of).

/// Descriptors a connection may hold at once (`http::fds`).
pub const FDS_PER_CONNECTION: u64 = crate::http::fds::FDS_PER_CONNECTION as u64;
/// Descriptors kept aside from connections: stdio, listeners, logs, the
/// root, the pidfile, each worker's epoll or ring and its wake-up eventfd,
/// a few io_uring pipes (which fall back to read + send when none is left).
pub const FDS_RESERVED: u64 = 64;

/// The max_connections per worker that fits `nofile` descriptors with
/// `workers` workers: `(nofile - FDS_RESERVED) / (FDS_PER_CONNECTION x workers)`.
pub fn fitting_connections(nofile: u64, workers: usize) -> usize {
    let per = FDS_PER_CONNECTION * workers.max(1) as u64;
    (nofile.saturating_sub(FDS_RESERVED) / per).clamp(1, usize::MAX as u64) as usize
}

/// The descriptors a worker's connections and their files may hold
/// (`http::FdBudget`): `(nofile - FDS_RESERVED) / workers`.
pub fn fd_budget(workers: usize) -> usize {
    let per = |n: u64| n.saturating_sub(FDS_RESERVED) / workers.max(1) as u64;
    nofile_limit().map_or(usize::MAX, |n| {
        usize::try_from(per(n)).unwrap_or(usize::MAX)
    })
}

/// At start and on reload: max_connections against RLIMIT_NOFILE. The
/// default (`explicit` false) comes down to what fits, said at `info`; an
/// explicit value that does not fit is kept, with a warning.
pub fn max_connections(configured: usize, explicit: bool, workers: usize) -> usize {
    let Some(nofile) = nofile_limit() else {
        return configured;
    };
    let fits = fitting_connections(nofile, workers);
    if configured <= fits {
        return configured;
    }
    let need = configured as u64 * FDS_PER_CONNECTION * workers as u64 + FDS_RESERVED;
    if explicit {
        crate::warn!(
            "max_connections {configured} x {workers} worker(s) may need {need} file descriptors, \
             more than RLIMIT_NOFILE {nofile}: past about {fits} connections per worker, \
             requests get 503 (raise the limit, e.g. LimitNOFILE=, or lower max_connections)"
        );
        configured
    } else {
        crate::info!(
            "max_connections {fits} per worker (the default {configured} x {workers} worker(s) \
             would need {need} file descriptors, RLIMIT_NOFILE is {nofile})"
        );
        fits
    }
}

/// The soft RLIMIT_NOFILE, unless unlimited or unknown.
pub(crate) fn nofile_limit() -> Option<u64> {
    // SAFETY: rlimit is a plain C struct; all-zero is a valid value.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes one rlimit into the live `rl`.
    crate::syscall!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }).ok()?;
    (rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

/// Most descriptor-table slots `grow_table` makes room for (the kernel's
/// table costs about 8 bytes a slot: 8 MiB at this bound).
const TABLE_MAX: u64 = 1 << 20;

/// Make room in the process's descriptor table for what `max_connections`
/// connections on each of `workers` workers may hold, up to RLIMIT_NOFILE,
/// now, from the calling (control) thread. The kernel grows the table by
/// doubling as descriptors are taken, and in a process of several threads
/// each growth waits for an RCU grace period (`expand_fdtable`): 5-10 ms
/// here, during which a worker that opened the file or accepted the
/// connection that needed the slot answers nobody (strace during a fill of
/// the open-file cache: the openat2 returning 256, 512, ... 4096 each took
/// 5-10 ms, the others 0.3 ms at most). Grown here, the workers never wait
/// for it. Best effort: a failure leaves the kernel to grow it as before.
pub fn grow_table(max_connections: usize, workers: usize) {
    let need = (max_connections as u64)
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_mul(workers.max(1) as u64)
        .saturating_add(FDS_RESERVED);
    let top = need.min(nofile_limit().unwrap_or(u64::MAX)).min(TABLE_MAX);
    let Ok(top) = libc::c_int::try_from(top.saturating_sub(1)) else {
        return;
    };
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) duplicates stderr (fd 2; a closed one
    // fails with EBADF, ignored) into the lowest free slot at or over
    // `top`, which the kernel makes room for; the new descriptor is closed
    // at once, the table keeps its size.
    if let Ok(fd) = crate::syscall!(unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, top) }) {
        // SAFETY: `fd` was just made here and is owned by nothing else.
        unsafe { libc::close(fd) };
    }
}
