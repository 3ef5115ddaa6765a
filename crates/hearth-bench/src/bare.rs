//! The floor: the same program run bare on the bench's host — fork and exec of the same
//! interpreter the sandbox runs (resolved in `/usr/local/bin`, `/usr/bin`, `/bin`, never
//! through `PATH`, where a version-manager shim may cost 100 ms a start), on the same file
//! name, with the same fixed environment, waited for until it exits. No sandbox, no
//! service: what `python3 main.py` costs on this machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::BenchError;

/// The environment every sandboxed program gets (hearth-sandbox's `BASE_ENV`).
const BASE_ENV: &[(&str, &str)] =
    &[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/tmp"), ("TMPDIR", "/tmp"), ("LANG", "C.UTF-8")];
const SEARCH_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// argv (`{file}` is the program), its file name, extra environment.
type Known = (&'static [&'static str], &'static str, &'static [(&'static str, &'static str)]);

/// How a language runs bare, as in hearth-sandbox's `languages.toml`.
fn known(lang: &str) -> Option<Known> {
    Some(match lang {
        "python" | "py" | "python3" => {
            (&["python3", "{file}"], "main.py", &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")])
        }
        "javascript" | "js" | "node" => (&["node", "{file}"], "main.js", &[]),
        "bash" | "sh" => (&["bash", "{file}"], "main.sh", &[]),
        "ruby" => (&["ruby", "{file}"], "main.rb", &[]),
        "perl" => (&["perl", "{file}"], "main.pl", &[]),
        "php" => (&["php", "{file}"], "main.php", &[]),
        "lua" => (&["lua", "{file}"], "main.lua", &[]),
        _ => return None,
    })
}

fn resolve(word: &str) -> Option<String> {
    if word.starts_with('/') {
        return Some(word.to_string());
    }
    SEARCH_DIRS.iter().map(|d| Path::new(d).join(word)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

/// A program written to a temp dir, ready to be run bare; the dir goes with it.
pub struct Bare {
    pub argv: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

impl Bare {
    /// `code` of `lang` as a file, run the way the sandbox would run it; `template`
    /// (`CMD ... {file}`, split on spaces) overrides the known command.
    pub fn new(lang: &str, code: &str, template: Option<&str>) -> Result<Bare, BenchError> {
        let (argv, file, extra): (Vec<String>, &str, &[(&str, &str)]) = match (template, known(lang)) {
            (Some(t), k) => (t.split_whitespace().map(String::from).collect(), k.map_or("program", |k| k.1), &[]),
            (None, Some((argv, file, env))) => (argv.iter().map(|s| s.to_string()).collect(), file, env),
            (None, None) => return Err(BenchError::NoBare(lang.to_string())),
        };
        let Some((first, rest)) = argv.split_first() else {
            return Err(BenchError::Config("--bare is empty".into()));
        };
        let binary = resolve(first).ok_or_else(|| BenchError::Bare {
            command: argv.clone(),
            why: format!("{first} is not in /usr/local/bin, /usr/bin or /bin"),
        })?;
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hearth-bench-{}-{n}", std::process::id()));
        let write = |e: std::io::Error| BenchError::Write { path: dir.display().to_string(), source: e };
        std::fs::create_dir_all(&dir).map_err(write)?;
        std::fs::write(dir.join(file), code).map_err(write)?;
        let mut full = vec![binary];
        full.extend(rest.iter().map(|a| a.replace("{file}", file)));
        let env = BASE_ENV.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(Bare { argv: full, env, dir })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the program once to its exit (output read to the end); its wall time in ms.
    pub fn run_once(&self) -> Result<f64, BenchError> {
        let start = Instant::now();
        let out = self.command().output().map_err(|e| self.failed(e.to_string()))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            return Err(self.failed(format!("{} ({})", out.status, String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(ms)
    }

    fn failed(&self, why: String) -> BenchError {
        BenchError::Bare { command: self.argv.clone(), why }
    }

    /// `concurrency` threads each running the program back to back for `duration`:
    /// runs completed and the seconds it took.
    pub fn throughput(self: &Arc<Self>, concurrency: usize, duration: Duration) -> Result<(u64, f64), BenchError> {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + duration;
        let threads: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let (me, done) = (self.clone(), done.clone());
                std::thread::spawn(move || -> Result<(), BenchError> {
                    while Instant::now() < deadline {
                        me.run_once()?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| self.failed("a bare run thread panicked".into()))??;
        }
        Ok((done.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_program_runs_from_its_own_file() {
        let bare = Bare::new("bash", "echo hi; test -f main.sh", None).unwrap();
        assert!(bare.argv[0].ends_with("/bash") && bare.argv[1] == "main.sh", "{:?}", bare.argv);
        assert!(bare.run_once().unwrap() > 0.0);
        let dir = bare.dir.clone();
        drop(bare);
        assert!(!dir.exists(), "the temp dir goes with it");
        assert!(matches!(Bare::new("cobol", "", None), Err(BenchError::NoBare(_))));
        let failing = Bare::new("bash", "exit 3", None).unwrap();
        assert!(matches!(failing.run_once(), Err(BenchError::Bare { .. })));
        let custom = Bare::new("bash", "echo", Some("sh {file}")).unwrap();
        assert_eq!(custom.argv[1], "main.sh");
    }
}
