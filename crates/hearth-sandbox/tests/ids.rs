//! Several executors on one host never share sandbox uids: each process driver claims its
//! own block of host ids (a lock file under /run/hearth/ids, the same for every executor of
//! the host), and every live sandbox holds its own pair. Checked on real sandboxes, from the
//! host uids their processes really run as. Needs root and cgroups.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use hearth_sandbox::{Driver, ProcessDriver, Sandbox};

/// Host uids (other than root: the launcher) of every process in sandbox `id`.
fn host_uids(id: &str) -> HashSet<u32> {
    let needle = format!("/{id}\n");
    let mut uids = HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cg) = std::fs::read_to_string(entry.path().join("cgroup")) else { continue };
        if !cg.contains(&needle) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(uid) = uid.filter(|&u| u != 0) {
            uids.insert(uid);
        }
    }
    uids
}

async fn sandboxes(driver: &ProcessDriver, n: usize) -> Vec<Sandbox> {
    let mut out = Vec::new();
    for _ in 0..n {
        let sb = tokio::time::timeout(Duration::from_secs(20), driver.create()).await.expect("in time").unwrap();
        out.push(sb);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_on_one_host_use_disjoint_uids() {
    let a = support::tagged_driver("ida");
    let b = support::tagged_driver("idb");
    let (ra, rb) = (a.id_range(), b.id_range());
    assert!(ra.end <= rb.start || rb.end <= ra.start, "blocks overlap: {ra:?} and {rb:?}");

    let mut seen: Vec<(String, u32, &'static str)> = Vec::new();
    let (sa, sb) = (sandboxes(&a, 3).await, sandboxes(&b, 3).await);
    for (sbs, range, who) in [(&sa, &ra, "a"), (&sb, &rb, "b")] {
        for sb in sbs {
            let uids = host_uids(sb.id());
            assert!(!uids.is_empty(), "sandbox {} has a process with its own host uid", sb.id());
            for uid in uids {
                assert!(range.contains(&uid), "sandbox {} of driver {who} runs as {uid}, outside {range:?}", sb.id());
                seen.push((sb.id().to_string(), uid, who));
            }
        }
    }
    // No uid is shared by two sandboxes, whichever driver made them.
    for (i, (id, uid, _)) in seen.iter().enumerate() {
        for (other, other_uid, _) in &seen[i + 1..] {
            assert!(id == other || uid != other_uid, "sandboxes {id} and {other} share host uid {uid}");
        }
    }
    for sb in sa.into_iter().chain(sb) {
        sb.destroy().await.unwrap();
    }

    // A dropped driver gives its block back: the next driver may take it.
    let first = ra.start;
    drop(a);
    let c = support::tagged_driver("idc");
    assert!(c.id_range().start <= first, "the lowest free block is taken: {:?} after {ra:?} was freed", c.id_range());
    assert!(c.id_range().end <= rb.start || rb.end <= c.id_range().start, "c overlaps b");
}
