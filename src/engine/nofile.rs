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
