//! `hearth run`: one program in one fresh sandbox (of the driver `--driver` names, the
//! process driver by default), output streamed as it comes, exit status passed through.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use hearth_proto::frame::{FileSpec, Stream};
use hearth_proto::{Limits, LimitsRequest, Status};
use hearth_sandbox::{JobInput, Languages, RunEvent};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct Args {
    /// Language id or alias (python, javascript, bash, c, cpp, ...); guessed from the file
    /// extension when left out.
    #[arg(long, short)]
    lang: Option<String>,
    /// The program's source file.
    file: PathBuf,
    /// Arguments passed to the program.
    #[arg(last = true)]
    args: Vec<String>,
    #[arg(long)]
    wall_ms: Option<u64>,
    #[arg(long)]
    cpu_ms: Option<u64>,
    #[arg(long)]
    memory_mb: Option<u64>,
    #[arg(long)]
    pids: Option<u64>,
    #[arg(long)]
    output_bytes: Option<u64>,
    /// Print the full result as JSON instead of the program's own output.
    #[arg(long)]
    json: bool,
    /// The hearth-agent binary (default: beside this executable, or $HEARTH_AGENT).
    #[arg(long, env = "HEARTH_AGENT")]
    agent: Option<PathBuf>,
    #[command(flatten)]
    driver: super::executor::DriverArgs,
}

/// Exit code for a result, following shell conventions where there is one.
fn exit_code(status: Status, exit: Option<i32>, signal: Option<i32>) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Timeout | Status::CpuLimit => 124,
        Status::CompileError => 1,
        Status::SandboxError | Status::InternalError => 70,
        _ => match (exit, signal) {
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            _ => 1,
        },
    }
}

fn guess_language<'a>(langs: &'a Languages, file: &std::path::Path) -> Option<&'a hearth_sandbox::Language> {
    let ext = file.extension()?.to_str()?;
    langs.list().iter().find(|l| l.file.rsplit_once('.').is_some_and(|(_, e)| e == ext))
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let code = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // The driver decides the languages: the host's (process) or the guest image's (VMs).
    let (driver, langs) = hearth_executor::driver::open(&args.driver.spec(args.agent.clone())).await?;
    let lang = match &args.lang {
        Some(name) => {
            langs.get(name).ok_or_else(|| anyhow!("unknown language {name:?}; `hearth doctor` lists them"))?
        }
        None => guess_language(&langs, &args.file)
            .ok_or_else(|| anyhow!("cannot tell the language of {}: pass --lang", args.file.display()))?,
    };
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut stdin).context("reading stdin")?;
    }
    let req = LimitsRequest {
        wall_ms: args.wall_ms,
        cpu_ms: args.cpu_ms,
        memory_mb: args.memory_mb,
        pids: args.pids,
        output_bytes: args.output_bytes,
    };
    let limits = lang.limits(&req, &Limits::DEFAULT, &Limits::MAX);
    let name = args.file.file_name().and_then(|n| n.to_str()).filter(|n| !n.is_empty()).unwrap_or(&lang.file);
    let files = vec![FileSpec { path: name.to_string(), data: code, executable: false }];
    let job =
        lang.job(JobInput { files, stdin, args: args.args.clone(), limits, keep_stdin_open: false, entry: None })?;

    let mut sandbox = driver.create().await?;
    let (tx, mut rx) = mpsc::channel(64);
    let json = args.json;
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let (RunEvent::Output { stream, data }, false) = (ev, json) {
                let _ = match stream {
                    Stream::Stdout => std::io::stdout().write_all(&data).and_then(|_| std::io::stdout().flush()),
                    Stream::Stderr => std::io::stderr().write_all(&data),
                };
            }
        }
    });
    let outcome = sandbox.run(&job, Some(tx), None).await;
    let _ = printer.await;
    sandbox.destroy().await?;
    let outcome = outcome?;
    let result = outcome.to_api("local", "local", &lang.id);
    if json {
        // A closed stdout (`| head`) is the reader's choice, not an error worth a panic.
        let text = serde_json::to_string_pretty(&result)?;
        let _ = writeln!(std::io::stdout(), "{text}");
    } else {
        if !result.compile_output.is_empty() {
            eprint!("{}", result.compile_output);
        }
        let r = &outcome.result;
        if r.status != Status::Ok && r.status != Status::RuntimeError {
            let detail = match r.status {
                Status::Timeout => format!(" (wall limit {} ms)", limits.wall_ms),
                Status::CpuLimit => format!(" (cpu limit {} ms)", limits.cpu_ms),
                Status::MemoryLimit => format!(" (memory limit {} MiB)", limits.memory_mb),
                Status::OutputLimit => format!(" (output cut at {} bytes)", limits.output_bytes),
                Status::Signaled => format!(" (signal {})", r.signal.unwrap_or(0)),
                _ => r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(),
            };
            eprintln!("hearth: {}{detail}", r.status);
        }
    }
    Ok(exit_code(outcome.result.status, outcome.result.exit_code, outcome.result.signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_shell_conventions() {
        assert_eq!(exit_code(Status::Ok, Some(0), None), 0);
        assert_eq!(exit_code(Status::RuntimeError, Some(3), None), 3);
        assert_eq!(exit_code(Status::Signaled, None, Some(11)), 139);
        assert_eq!(exit_code(Status::Timeout, None, Some(9)), 124);
        assert_eq!(exit_code(Status::MemoryLimit, None, Some(9)), 137);
        assert_eq!(exit_code(Status::SandboxError, None, None), 70);
    }
}
