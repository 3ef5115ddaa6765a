//! Firecracker's HTTP API on its Unix socket: the requests hearth makes, in the order it
//! makes them (boot source, drives, machine config, vsock, `InstanceStart`; pause, snapshot
//! create; snapshot load). One HTTP/1.1 connection per request (hyper).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("firecracker api {path}: connecting: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("firecracker api {method} {path}: {why}")]
    Http { method: &'static str, path: String, why: String },
    #[error("firecracker api {method} {path}: {status}: {fault}")]
    Refused { method: &'static str, path: String, status: u16, fault: String },
    #[error("firecracker api {method} {path}: no answer within {waited:?}")]
    Timeout { method: &'static str, path: String, waited: Duration },
}

/// A Firecracker process's API socket.
#[derive(Debug, Clone)]
pub struct Api {
    socket: PathBuf,
    wait: Duration,
}

/// What a fresh VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub boot_args: String,
    pub rootfs: PathBuf,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub guest_cid: u32,
    /// The host end of the vsock device (relative paths are the Firecracker process's cwd:
    /// each VM has its own, so clones of one snapshot do not collide).
    pub vsock_uds: PathBuf,
}

impl Api {
    pub fn new(socket: &Path) -> Api {
        Api { socket: socket.to_path_buf(), wait: Duration::from_secs(10) }
    }

    /// One request; a 2xx answer is success, anything else carries Firecracker's fault message.
    pub async fn call(&self, method: &'static str, path: &str, body: &Value) -> Result<Value, ApiError> {
        let work = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ApiError::Connect { path: self.socket.display().to_string(), source })?;
            let http = |why: String| ApiError::Http { method, path: path.to_string(), why };
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost")
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| http(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| http(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map_err(|e| http(e.to_string()))?.to_bytes();
            let value: Value =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            if (200..300).contains(&status) {
                Ok(value)
            } else {
                let fault = value.get("fault_message").and_then(Value::as_str).unwrap_or("").to_string();
                Err(ApiError::Refused { method, path: path.to_string(), status, fault })
            }
        };
        timeout(self.wait, work).await.map_err(|_| ApiError::Timeout {
            method,
            path: path.to_string(),
            waited: self.wait,
        })?
    }

    /// Configures a fresh VM and starts it.
    pub async fn boot(&self, p: &BootPlan) -> Result<(), ApiError> {
        self.call(
            "PUT",
            "/boot-source",
            &json!({
                "kernel_image_path": p.kernel,
                "initrd_path": p.initrd,
                "boot_args": p.boot_args,
            }),
        )
        .await?;
        self.call(
            "PUT",
            "/drives/rootfs",
            &json!({
                "drive_id": "rootfs",
                "path_on_host": p.rootfs,
                "is_root_device": false,
                "is_read_only": true,
            }),
        )
        .await?;
        self.call(
            "PUT",
            "/machine-config",
            &json!({ "vcpu_count": p.vcpus, "mem_size_mib": p.memory_mb, "smt": false }),
        )
        .await?;
        self.call("PUT", "/vsock", &json!({ "guest_cid": p.guest_cid, "uds_path": p.vsock_uds })).await?;
        self.call("PUT", "/actions", &json!({ "action_type": "InstanceStart" })).await?;
        Ok(())
    }

    /// Pauses the VM and writes a full snapshot (state and memory).
    pub async fn snapshot(&self, state: &Path, memory: &Path) -> Result<(), ApiError> {
        self.call("PATCH", "/vm", &json!({ "state": "Paused" })).await?;
        self.call(
            "PUT",
            "/snapshot/create",
            &json!({ "snapshot_type": "Full", "snapshot_path": state, "mem_file_path": memory }),
        )
        .await?;
        Ok(())
    }

    /// Restores a snapshot into this (fresh) Firecracker process and resumes it.
    pub async fn restore(&self, state: &Path, memory: &Path) -> Result<(), ApiError> {
        self.call(
            "PUT",
            "/snapshot/load",
            &json!({
                "snapshot_path": state,
                "mem_backend": { "backend_type": "File", "backend_path": memory },
                "enable_diff_snapshots": false,
                "resume_vm": true,
            }),
        )
        .await?;
        Ok(())
    }
}
