//! The firecracker driver's requests, against a STUB of Firecracker's API server (a Unix
//! socket speaking just enough HTTP/1.1 to record each request and answer it) and a STUB of
//! its vsock Unix socket: no Firecracker binary can run on this machine. The real driver is
//! tested by `crates/hearth-image/tests/firecracker.rs` where Firecracker and KVM work.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_sandbox::firecracker::api::{Api, ApiError, BootPlan};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::time::timeout;

/// One request the stub saw.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// A stub API server: records requests, answers 204, or 400 with a fault message for
/// paths in `refuse`.
fn stub_api_server(sock: &Path, refuse: &'static [&'static str]) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(sock).unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                let mut head = String::new();
                r.read_line(&mut head).await.unwrap();
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).await.unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let refused = refuse.contains(&path.as_str());
                log.lock().unwrap().push(Seen { method, path, body });
                let answer = if refused {
                    let fault = r#"{"fault_message":"the stub refuses this"}"#;
                    format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{fault}", fault.len())
                } else {
                    "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                };
                let mut stream = r.into_inner();
                stream.write_all(answer.as_bytes()).await.unwrap();
                let _ = stream.shutdown().await;
            });
        }
    });
    seen
}

fn plan() -> BootPlan {
    BootPlan {
        kernel: PathBuf::from("/images/x/vmlinux"),
        initrd: PathBuf::from("/images/x/initrd.cpio"),
        boot_args: "console=ttyS0 reboot=k pci=off hearth.vsock_port=52".into(),
        rootfs: PathBuf::from("/images/x/rootfs.ext4"),
        vcpus: 1,
        memory_mb: 512,
        guest_cid: 3,
        vsock_uds: PathBuf::from("v.sock"),
    }
}

#[tokio::test]
async fn boot_sequence_against_a_stub_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let seen = stub_api_server(&sock, &[]);
    timeout(Duration::from_secs(10), Api::new(&sock).boot(&plan())).await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    let order: Vec<String> = seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(order, ["PUT /boot-source", "PUT /drives/rootfs", "PUT /machine-config", "PUT /vsock", "PUT /actions"]);
    assert_eq!(
        seen[0].body,
        json!({"kernel_image_path": "/images/x/vmlinux", "initrd_path": "/images/x/initrd.cpio",
               "boot_args": "console=ttyS0 reboot=k pci=off hearth.vsock_port=52"})
    );
    assert_eq!(
        seen[1].body,
        json!({"drive_id": "rootfs", "path_on_host": "/images/x/rootfs.ext4", "is_root_device": false, "is_read_only": true})
    );
    assert_eq!(seen[2].body, json!({"vcpu_count": 1, "mem_size_mib": 512, "smt": false}));
    assert_eq!(seen[3].body, json!({"guest_cid": 3, "uds_path": "v.sock"}));
    assert_eq!(seen[4].body, json!({"action_type": "InstanceStart"}));
}

#[tokio::test]
async fn snapshot_create_and_restore_against_a_stub_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let seen = stub_api_server(&sock, &[]);
    let api = Api::new(&sock);
    let (state, mem) = (Path::new("/snap/vm.state"), Path::new("/snap/vm.mem"));
    timeout(Duration::from_secs(10), api.snapshot(state, mem)).await.unwrap().unwrap();
    timeout(Duration::from_secs(10), api.restore(state, mem)).await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    let order: Vec<String> = seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(order, ["PATCH /vm", "PUT /snapshot/create", "PUT /snapshot/load"]);
    assert_eq!(seen[0].body, json!({"state": "Paused"}));
    assert_eq!(
        seen[1].body,
        json!({"snapshot_type": "Full", "snapshot_path": "/snap/vm.state", "mem_file_path": "/snap/vm.mem"})
    );
    assert_eq!(
        seen[2].body,
        json!({"snapshot_path": "/snap/vm.state", "mem_backend": {"backend_type": "File", "backend_path": "/snap/vm.mem"},
               "enable_diff_snapshots": false, "resume_vm": true})
    );
}

#[tokio::test]
async fn a_refused_request_stops_the_sequence_with_firecrackers_message_stub_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let seen = stub_api_server(&sock, &["/machine-config"]);
    let err = timeout(Duration::from_secs(10), Api::new(&sock).boot(&plan())).await.unwrap().unwrap_err();
    match err {
        ApiError::Refused { status, fault, path, .. } => {
            assert_eq!(status, 400);
            assert_eq!(path, "/machine-config");
            assert_eq!(fault, "the stub refuses this");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3, "nothing is sent after the refusal");
    // No API server at all: a clear connect error, not a hang.
    let none = Api::new(&dir.path().join("absent.sock")).boot(&plan()).await;
    assert!(matches!(none, Err(ApiError::Connect { .. })), "{none:?}");
}

/// A stub of Firecracker's vsock socket: the first connection is closed unanswered (the
/// guest is not listening yet), the next gets `OK` and then the agent's bytes.
#[tokio::test]
async fn vsock_connect_handshake_against_a_stub_vsock_socket() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = UnixListener::bind(&uds).unwrap();
    let stub = tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        drop(first);
        let (mut s, _) = listener.accept().await.unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        assert_eq!(line, b"CONNECT 52");
        s.write_all(b"OK 1073741824\nhello from the agent").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        got
    });
    let mut s = hearth_sandbox::firecracker::vsock::connect(&uds, 52, Duration::from_secs(5)).await.unwrap();
    let mut buf = vec![0u8; 20];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"hello from the agent", "nothing of the handshake leaks into the stream");
    s.write_all(b"ping").await.unwrap();
    assert_eq!(&stub.await.unwrap(), b"ping");
    // Nobody there at all: an error once the deadline passes, not a hang.
    let gone =
        hearth_sandbox::firecracker::vsock::connect(&dir.path().join("none"), 52, Duration::from_millis(200)).await;
    assert!(gone.is_err());
}
