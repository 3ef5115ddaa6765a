//! Host uid/gid pairs for process sandboxes, unique on this host across every executor.
//!
//! A sandbox's root maps to a host uid and its runner to the next one; `RLIMIT_NPROC` and
//! signal permissions are per host uid, so two live sandboxes must never share one, not even
//! when several executors run on one host. The host range (`base .. base + 2*pairs`) is cut
//! into blocks; each driver claims a free block by taking an exclusive `flock` on
//! `<dir>/block-<n>.lock` and holds it for its lifetime (the kernel drops the lock when the
//! process dies, however it dies, so a crashed executor's block is free again at once). Inside
//! its block a driver leases pairs to live sandboxes and takes them back when a sandbox is
//! destroyed, so a long-lived idle sandbox keeps its pair however many others come and go.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};

use crate::error::SandboxError;

/// Where the host's id ranges are divided up (per host, not per executor).
pub const DEFAULT_LOCK_DIR: &str = "/run/hearth/ids";

/// Which ids a host gives to sandboxes, and how it divides them among executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPlan {
    /// First host uid/gid for sandboxes.
    pub base: u32,
    /// Pairs (root + runner) in the host's whole range.
    pub pairs: u32,
    /// Pairs in one executor's block: the most sandboxes one driver can hold alive at once.
    pub block_pairs: u32,
    /// Directory of the lock files (shared by every executor of the host).
    pub lock_dir: PathBuf,
}

impl IdPlan {
    /// Blocks in the host's range.
    pub fn blocks(&self) -> u32 {
        self.pairs / self.block_pairs.max(1)
    }
}

struct Leases {
    in_use: Vec<bool>,
    /// Where the next search starts (a freed pair is not reused at once).
    next: usize,
}

/// One claimed block; lives as long as the driver that claimed it.
pub struct IdBlock {
    /// The block's number in the host's range.
    pub index: u32,
    /// First host uid of the block.
    pub first: u32,
    leases: Mutex<Leases>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for IdBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdBlock").field("index", &self.index).field("first", &self.first).finish()
    }
}

/// A uid/gid pair held by one live sandbox; given back on drop.
pub struct IdLease {
    block: Arc<IdBlock>,
    pair: usize,
}

impl IdLease {
    /// Host uid (and gid) of the sandbox's root; the runner is this plus one.
    pub fn host_base(&self) -> u32 {
        self.block.first + 2 * self.pair as u32
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        let mut leases = self.block.leases.lock().expect("id leases lock");
        leases.in_use[self.pair] = false;
    }
}

impl IdBlock {
    /// Claims the first block of `plan` no other live driver on this host holds.
    pub fn claim(plan: &IdPlan) -> Result<Arc<IdBlock>, SandboxError> {
        let unavailable = |why: String| SandboxError::Unavailable { driver: "process", why };
        if plan.block_pairs == 0 || plan.blocks() == 0 {
            return Err(unavailable(format!(
                "sandbox id range of {} pairs cannot hold a block of {}",
                plan.pairs, plan.block_pairs
            )));
        }
        std::fs::create_dir_all(&plan.lock_dir)
            .map_err(|e| unavailable(format!("creating the id lock dir {}: {e}", plan.lock_dir.display())))?;
        for index in 0..plan.blocks() {
            let path = plan.lock_dir.join(format!("block-{index}.lock"));
            let file = open(&path).map_err(|e| unavailable(format!("opening {}: {e}", path.display())))?;
            let Ok(mut lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            // For whoever looks: which process holds the block.
            let _ = lock.set_len(0).and_then(|_| writeln!(*lock, "{}", std::process::id()));
            let block_pairs = plan.block_pairs as usize;
            return Ok(Arc::new(IdBlock {
                index,
                first: plan.base + 2 * index * plan.block_pairs,
                leases: Mutex::new(Leases { in_use: vec![false; block_pairs], next: 0 }),
                _lock: lock,
            }));
        }
        Err(unavailable(format!(
            "all {} sandbox id blocks under {} are held by other executors on this host",
            plan.blocks(),
            plan.lock_dir.display()
        )))
    }

    /// A free pair of this block, or `None` when every pair is held by a live sandbox.
    pub fn lease(self: &Arc<IdBlock>) -> Option<IdLease> {
        let mut leases = self.leases.lock().expect("id leases lock");
        let n = leases.in_use.len();
        let start = leases.next;
        let pair = (0..n).map(|i| (start + i) % n).find(|&p| !leases.in_use[p])?;
        leases.in_use[pair] = true;
        leases.next = (pair + 1) % n;
        Some(IdLease { block: self.clone(), pair })
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> IdPlan {
        IdPlan { base: 200_000, pairs: 12, block_pairs: 4, lock_dir: dir.to_path_buf() }
    }

    #[test]
    fn blocks_are_exclusive_while_held_and_free_again_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path());
        let a = IdBlock::claim(&plan).unwrap();
        let b = IdBlock::claim(&plan).unwrap();
        let c = IdBlock::claim(&plan).unwrap();
        assert_eq!((a.first, b.first, c.first), (200_000, 200_008, 200_016));
        assert!(IdBlock::claim(&plan).is_err(), "three blocks of four pairs in twelve");
        drop(b);
        let again = IdBlock::claim(&plan).unwrap();
        assert_eq!(again.index, 1, "the freed block is taken again");
    }

    #[test]
    fn leases_are_unique_among_live_sandboxes_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let block = IdBlock::claim(&plan(dir.path())).unwrap();
        let held: Vec<IdLease> = (0..4).map(|_| block.lease().unwrap()).collect();
        let mut bases: Vec<u32> = held.iter().map(IdLease::host_base).collect();
        bases.sort_unstable();
        assert_eq!(bases, vec![200_000, 200_002, 200_004, 200_006]);
        assert!(block.lease().is_none(), "every pair is held");
        let mut held = held;
        let long_lived = held.remove(0);
        drop(held);
        // Many sandboxes come and go; the long-lived one keeps its pair to itself.
        for _ in 0..20 {
            let l = block.lease().unwrap();
            assert_ne!(l.host_base(), long_lived.host_base());
        }
    }
}
