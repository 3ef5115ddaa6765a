//! The files under `deploy/` stay true: the nats-server configs are valid for the real
//! server (`nats-server -t`) and form one three-node cluster, and every `hearth` flag the
//! systemd units pass exists.

mod support;

use std::path::PathBuf;
use std::process::Command;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_nats_configs_are_valid_and_make_one_cluster_of_three() {
    let mut names = Vec::new();
    let mut routes = Vec::new();
    for i in 1..=3 {
        let path = deploy().join(format!("nats/nats-{i}.conf"));
        let out = Command::new(support::nats_server()).arg("-c").arg(&path).arg("-t").output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains("is valid"), "{}: {said}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        names.push(text.lines().find(|l| l.starts_with("server_name:")).unwrap().to_string());
        let r: Vec<&str> = text.lines().map(str::trim).filter(|l| l.starts_with("nats-route://")).collect();
        assert_eq!(r.len(), 3, "{}: every node routes to all three", path.display());
        routes.push(r.join(","));
        assert!(text.contains("jetstream {") && text.contains("name: hearth"), "{}", path.display());
    }
    names.dedup();
    assert_eq!(names.len(), 3, "three distinct server names");
    assert!(routes.windows(2).all(|w| w[0] == w[1]), "the same routes everywhere");
}

#[test]
fn the_systemd_units_pass_only_flags_hearth_has() {
    for (unit, sub) in [("hearth-gateway@.service", "gateway"), ("hearth-executor@.service", "executor")] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(exec.contains(&format!("hearth {sub}")), "{unit}: {exec}");
        let help = Command::new(env!("CARGO_BIN_EXE_hearth")).args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
            assert!(help.contains(flag), "{unit} passes {flag}, which `hearth {sub}` does not take");
        }
        // The settings the unit's comment names are ones hearth reads.
        for var in text.split(|c: char| !(c.is_ascii_uppercase() || c == '_')).filter(|w| w.starts_with("HEARTH_")) {
            let read = help.contains(&format!("env: {var}=")) || help.contains(&format!("env: {var}]"));
            assert!(read, "{unit} names {var}, which `hearth {sub}` does not read");
        }
    }
}
