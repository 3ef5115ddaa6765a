//! `hearth doctor`: what works on this host, and why not.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hearth_executor::driver::{DriverKind, DriverSpec};
use hearth_proto::Limits;
use hearth_sandbox::host::{self, Check};
use hearth_sandbox::{locate_agent, Driver, Languages, ProcessConfig, ProcessDriver};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn line(c: &Check) {
    let mark = if c.ok { "ok  " } else { "FAIL" };
    println!("  {mark} {:<16} {}", c.name, c.detail);
}

/// Creates a real sandbox and runs `echo` in it: the only proof that the driver works.
async fn try_process_driver(agent: Option<PathBuf>) -> Check {
    let Some(agent) = agent else {
        return Check {
            name: "process",
            ok: false,
            detail: "hearth-agent not found (build it or set HEARTH_AGENT)".into(),
        };
    };
    let driver = match ProcessDriver::new(ProcessConfig::new(agent.clone())) {
        Ok(d) => Arc::new(d),
        Err(e) => return Check { name: "process", ok: false, detail: e.to_string() },
    };
    let Ok(langs) = Languages::detect() else {
        return Check { name: "process", ok: false, detail: "languages file unreadable".into() };
    };
    let Some(bash) = langs.get("bash") else {
        return Check { name: "process", ok: false, detail: "bash not found on the host".into() };
    };
    let start = Instant::now();
    let result = async {
        let mut sb = driver.create().await?;
        let ready_ms = start.elapsed().as_millis();
        let out = sb.run(&bash.job_for_code(b"echo ok", Vec::new(), Limits::DEFAULT), None, None).await;
        sb.destroy().await?;
        out.map(|o| (o, ready_ms))
    }
    .await;
    match result {
        Ok((o, ready_ms)) if o.stdout == b"ok\n" => Check {
            name: "process",
            ok: true,
            detail: format!("works: sandbox ready in {ready_ms} ms, `echo ok` ran (agent {})", agent.display()),
        },
        Ok((o, _)) => Check { name: "process", ok: false, detail: format!("test run ended {:?}", o.result.status) },
        Err(e) => Check { name: "process", ok: false, detail: e.to_string() },
    }
}

/// Boots a VM of `kind` on the default image and runs `echo` in it.
async fn try_vm_driver(kind: DriverKind, name: &'static str) -> Check {
    let spec = DriverSpec { kind, ..DriverSpec::default() };
    if kind == DriverKind::Firecracker {
        let fc = host::find_binary("firecracker").unwrap_or_else(|| "firecracker".into());
        if let Some(why) = hearth_sandbox::firecracker::unavailable_reason(&fc) {
            return Check { name, ok: false, detail: why };
        }
    }
    let start = Instant::now();
    let (driver, langs) = match hearth_executor::driver::open(&spec).await {
        Ok(d) => d,
        Err(e) => return Check { name, ok: false, detail: e.to_string() },
    };
    let opened_ms = start.elapsed().as_millis();
    let Some(bash) = langs.get("bash") else {
        return Check { name, ok: false, detail: "the guest image has no bash".into() };
    };
    let start = Instant::now();
    let result = async {
        let mut sb = driver.create().await?;
        let ready_ms = start.elapsed().as_millis();
        let out = sb.run(&bash.job_for_code(b"echo ok", Vec::new(), Limits::DEFAULT), None, None).await;
        sb.destroy().await?;
        out.map(|o| (o, ready_ms))
    }
    .await;
    let how = match kind {
        DriverKind::Qemu => {
            let kernel = hearth_image::Image::open(&hearth_image::default_image()).map(|i| i.vmlinux());
            let p = kernel.ok().and_then(|k| hearth_sandbox::qemu::accel::probe_memo(&k));
            p.map(|p| format!(", {} ({})", if p.kvm { "KVM" } else { "TCG" }, p.why)).unwrap_or_default()
        }
        _ => String::new(),
    };
    match result {
        Ok((o, ready_ms)) if o.stdout == b"ok\n" => Check {
            name,
            ok: true,
            detail: format!(
                "works: driver up in {opened_ms} ms, VM ready in {ready_ms} ms, `echo ok` ran, {} languages in the image{how}",
                langs.list().len()
            ),
        },
        Ok((o, _)) => Check { name, ok: false, detail: format!("test run ended {:?}", o.result.status) },
        Err(e) => Check { name, ok: false, detail: e.to_string() },
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let mut checks = host::probe(std::path::Path::new("/sys/fs/cgroup"));
    checks.push(host::kvm());
    let process = try_process_driver(locate_agent()).await;
    let qemu = try_vm_driver(DriverKind::Qemu, "qemu").await;
    let fc = try_vm_driver(DriverKind::Firecracker, "firecracker").await;
    let langs = Languages::detect()?;
    let flag = std::env::var_os("HEARTH_NATS_SERVER").map(std::path::PathBuf::from);
    let nats = match super::up::find_nats_server(flag.as_deref(), std::path::Path::new(".hearth")).ok() {
        Some(p) => {
            let v = std::process::Command::new(&p).arg("--version").output();
            let v = v.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
            Check { name: "nats-server", ok: true, detail: format!("{v} at {}", p.display()) }
        }
        None => Check { name: "nats-server", ok: false, detail: "not found (scripts/setup installs it)".into() },
    };
    if args.json {
        let report = serde_json::json!({
            "host": checks,
            "drivers": [process, qemu, fc],
            "languages": langs.list(),
            "nats_server": nats,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("host");
        checks.iter().for_each(line);
        println!("drivers");
        [&process, &qemu, &fc].into_iter().for_each(line);
        println!("languages");
        for l in langs.list() {
            println!("  ok   {:<16} {} {}{}", l.id, l.name, l.version, if l.compiled { " (compiled)" } else { "" });
        }
        println!("service");
        line(&nats);
    }
    Ok(if process.ok { 0 } else { 1 })
}
