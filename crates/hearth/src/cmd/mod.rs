//! One module per subcommand; each exposes clap `Args` and `async fn run(args)`, returning
//! the process exit code.

pub mod access;
pub mod bench;
pub mod cluster;
pub mod doctor;
pub mod executor;
pub mod gateway;
pub mod image;
pub mod run;
pub mod up;

/// Files a gateway needs open for ten thousand WebSockets and then some.
pub const GATEWAY_FILES: u64 = 16_384;
/// What [`raise_fd_limit`] asks for when it may.
const FILES_HOPED: u64 = 65_536;

/// Raises this process's open-file limit (a gateway holding ten thousand sockets needs far
/// more than the usual 1024) towards 65536, or `need` if more: the soft limit up to the hard
/// one, the hard one too where the process may (CAP_SYS_RESOURCE). Says so when it stays
/// below `need`.
pub fn raise_fd_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let want = need.max(FILES_HOPED);
    if soft >= want {
        return;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let now = getrlimit(Resource::RLIMIT_NOFILE).map(|(s, _)| s).unwrap_or(soft);
    if now < need {
        eprintln!("hearth: may open only {now} files (needs {need}); fewer sockets will fit (raise `ulimit -Hn`)");
    }
}
