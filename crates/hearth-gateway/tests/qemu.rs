//! The whole path with `--driver qemu`: HTTP -> NATS -> an executor whose sandboxes are
//! QEMU microVMs on the guest image -> the verdict. The languages the service offers are the
//! image's (with the image's versions), not the host's.

mod support;

use std::time::Duration;

use anyhow::Context;
use hearth_executor::driver::{DriverKind, DriverSpec};
use support::{get, post_json, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_the_service_in_a_qemu_vm() -> anyhow::Result<()> {
    let agent = hearth_sandbox::locate_agent().context("hearth-agent (musl) not built")?;
    let image = tokio::task::spawn_blocking(move || {
        hearth_image::build(&hearth_image::BuildConfig::new(agent), &mut |l| eprintln!("image: {l}"))
    })
    .await??;
    let mut stack = Stack::start(support::quick_bus(), false).await?;
    let spec = DriverSpec {
        kind: DriverKind::Qemu,
        image: Some(image.dir.clone()),
        tag: "e2e".into(),
        ..DriverSpec::default()
    };
    stack.start_executor_on("vm1", 1, spec).await?;

    let body = serde_json::json!({"user_id": "u1", "session_id": "vm", "lang": "python",
        "code": "import platform\nprint(input()[::-1], platform.release())", "stdin": "hello"});
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body, Duration::from_secs(180)).await?;
    assert_eq!(a.status, 200, "{}", a.json());
    let r = a.json();
    assert_eq!(r["status"], "ok", "{r}");
    let release = &image.manifest.kernel.release;
    assert_eq!(r["stdout"], format!("olleh {release}\n"), "it ran under the guest's kernel");

    let langs = get(stack.addr, "/v1/languages").await?.json();
    let list = langs.as_array().or_else(|| langs["languages"].as_array()).context("a language list")?.clone();
    let js = list.iter().find(|l| l["id"] == "javascript").context("javascript offered")?;
    let in_image = image.manifest.languages.iter().find(|l| l.id == "javascript").unwrap();
    assert_eq!(js["version"], in_image.version.as_str(), "the image's node, not the host's");
    assert!(list.iter().all(|l| l["id"] != "java"), "only what the image has is offered");
    stack.stop_executor().await?;
    Ok(())
}
