//! The languages on offer, from one data file (`languages.toml`, embedded; a file of the
//! same shape can replace it). Only runtimes that exist on the host are offered; their
//! binaries are resolved once to absolute paths and every program gets a clean, fixed
//! environment. A language may raise the default limits for itself (room for the JVM's
//! threads over [`Limits::DEFAULT`]'s pids, more time than [`Limits::COMPILE`] for scalac).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_proto::frame::{AgentRun, FileSpec, Prepare, Step};
use hearth_proto::{Limits, LimitsRequest};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The embedded data file.
pub const DEFAULT_LANGUAGES: &str = include_str!("../languages.toml");

/// Prestart loaders, by the name `languages.toml` gives them.
const LOADERS: &[(&str, &str)] =
    &[("python.py", include_str!("../loaders/python.py")), ("node.js", include_str!("../loaders/node.js"))];

/// Where runtimes are looked for, in order.
pub const SEARCH_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// The environment of every program, before a language's own additions.
const BASE_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("USER", "runner"),
];

/// A bad languages file, or a request a language cannot take.
#[derive(Debug, Error)]
pub enum LanguageError {
    #[error("languages file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("language {id}: {why}")]
    Invalid { id: String, why: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("entry {entry:?} is not one of the files")]
    NoSuchEntry { entry: String },
}

#[derive(Debug, Deserialize)]
struct File {
    language: Vec<Def>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Def {
    id: String,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    file: String,
    /// Store single-file `code` as a dot file (`.main.py`), so the program's own `ls` shows
    /// only what it made; false where the toolchain names things after the file (java's
    /// class, go skipping dot files, rust's crate, nim's module).
    #[serde(default = "yes")]
    hide_code_file: bool,
    compile: Option<Vec<String>>,
    run: Vec<String>,
    prestart: Option<Vec<String>>,
    loader: Option<String>,
    version: Vec<String>,
    /// Debian packages that provide the language (for guest images).
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Binaries the steps need besides their first words (e.g. what an `sh -c` step calls).
    #[serde(default)]
    requires: Vec<String>,
    /// Files every job of the language gets beside its own (path -> text).
    #[serde(default)]
    support: BTreeMap<String, String>,
    #[serde(default)]
    limits: DefLimits,
}

fn yes() -> bool {
    true
}

/// A language's own limits: each field set here raises the server's default for runs of
/// the language (`run`) or its compile step (`compile`, over [`Limits::COMPILE`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefLimits {
    #[serde(default)]
    run: LimitsRequest,
    #[serde(default)]
    compile: LimitsRequest,
}

/// `base` with each field raised to what `floor` sets, capped by `max`.
fn raise(base: &Limits, floor: &LimitsRequest, max: &Limits) -> Limits {
    let up = |b: u64, f: Option<u64>, m: u64| f.map_or(b, |f| b.max(f)).min(m);
    Limits {
        wall_ms: up(base.wall_ms, floor.wall_ms, max.wall_ms),
        cpu_ms: up(base.cpu_ms, floor.cpu_ms, max.cpu_ms),
        memory_mb: up(base.memory_mb, floor.memory_mb, max.memory_mb),
        pids: up(base.pids, floor.pids, max.pids),
        output_bytes: up(base.output_bytes, floor.output_bytes, max.output_bytes),
        file_bytes: base.file_bytes.min(max.file_bytes),
    }
}

/// A language whose runtime is present, ready to turn code into an [`AgentRun`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Language {
    pub id: String,
    pub name: String,
    pub version: String,
    pub aliases: Vec<String>,
    pub compiled: bool,
    /// Entry file name for single-file code.
    pub file: String,
    /// See [`Language::code_file`].
    #[serde(skip)]
    hide_code_file: bool,
    #[serde(skip)]
    compile: Option<Vec<String>>,
    #[serde(skip)]
    run: Vec<String>,
    /// The interpreter started ahead of the code, waiting for it (see `loaders/`).
    #[serde(skip)]
    prestart: Option<Vec<String>>,
    #[serde(skip)]
    env: Vec<(String, String)>,
    /// What the language raises over the server's run defaults (see [`Language::limits`]).
    #[serde(skip)]
    run_floor: LimitsRequest,
    /// Limits of the compile step: [`Limits::COMPILE`] raised by the language's own.
    #[serde(skip)]
    compile_limits: Limits,
    /// Files added to every job (a file of the job's own with the same path wins).
    #[serde(skip)]
    support: Vec<FileSpec>,
}

/// What one run of a language needs besides the language.
#[derive(Debug, Clone, Default)]
pub struct JobInput {
    pub files: Vec<FileSpec>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    /// The run's limits, as resolved by [`Language::limits`] (which applies the language's
    /// defaults where the request left a field out).
    pub limits: Limits,
    pub keep_stdin_open: bool,
    /// The file to compile or run (one of `files`); `None`: the first file.
    pub entry: Option<String>,
}

/// The languages on offer.
#[derive(Debug, Clone, Default)]
pub struct Languages {
    list: Vec<Language>,
}

/// Where the runtimes of a set of languages live: this host (the process driver), or a
/// guest image (the VM drivers), whose binaries and versions were recorded when it was built.
pub trait Runtimes: Sync {
    /// The absolute path `word` runs as (a word that is already a path stays as it is), if
    /// it exists.
    fn find(&self, word: &str) -> Option<String>;
    /// The version the runtime reports for `argv` (an absolute path first).
    fn version(&self, argv: &[String]) -> String;
}

/// The runtimes of this host, looked up in `dirs`.
pub struct HostRuntimes<'a> {
    pub dirs: &'a [&'a Path],
}

impl Runtimes for HostRuntimes<'_> {
    fn find(&self, word: &str) -> Option<String> {
        if word.starts_with('/') || word.starts_with("./") {
            return Some(word.to_string());
        }
        self.dirs.iter().map(|d| d.join(word)).find(|p| p.is_file()).map(|p| p.display().to_string())
    }

    fn version(&self, argv: &[String]) -> String {
        probe_version(argv)
    }
}

fn resolve_binary(word: &str, rt: &dyn Runtimes) -> Option<String> {
    rt.find(word)
}

fn resolve_argv(argv: &[String], rt: &dyn Runtimes) -> Option<Vec<String>> {
    let (first, rest) = argv.split_first()?;
    let mut out = vec![resolve_binary(first, rt)?];
    out.extend(rest.iter().cloned());
    Some(out)
}

/// The version in what a version command printed (stdout then stderr).
pub fn version_from_output(text: &str) -> String {
    version_number(text).unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// The first `digits.digits...` run in the first line of a version banner, wherever it
/// starts ("gcc (Debian 12.2.0-14) 12.2.0", "go version go1.19.8", "v20.20.2").
fn version_number(banner: &str) -> Option<String> {
    let line = banner.lines().find(|l| !l.trim().is_empty())?;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let n: String = line[i..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let n = n.trim_end_matches('.');
            if n.contains('.') {
                return Some(n.to_string());
            }
            i += n.len().max(1);
        } else {
            i += 1;
        }
    }
    None
}

fn probe_version(argv: &[String]) -> String {
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).env_clear().env("LANG", "C.UTF-8").output();
    match out {
        Ok(o) => version_from_output(&format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(_) => "unknown".into(),
    }
}

impl Languages {
    /// The embedded languages that exist on this host.
    /// (Versions come from the host's cache while the runtimes are unchanged: [`crate::versions`].)
    pub fn detect() -> Result<Languages, LanguageError> {
        Languages::on_host(DEFAULT_LANGUAGES)
    }

    /// Languages from a file of `languages.toml`'s shape.
    pub fn from_file(path: &Path) -> Result<Languages, LanguageError> {
        let text = std::fs::read_to_string(path).map_err(|source| LanguageError::Read { path: path.into(), source })?;
        Languages::on_host(&text)
    }

    /// `text`'s languages found in the host's search directories, versions cached.
    fn on_host(text: &str) -> Result<Languages, LanguageError> {
        let dirs: Vec<&Path> = SEARCH_DIRS.iter().map(Path::new).collect();
        let host = HostRuntimes { dirs: &dirs };
        let cached = crate::versions::CachedVersions::open(&host, &crate::versions::default_dir());
        let languages = Languages::from_toml_with(text, &cached)?;
        cached.save();
        Ok(languages)
    }

    /// Parses `text` and keeps the languages whose binaries exist in `dirs`.
    pub fn from_toml(text: &str, dirs: &[&Path]) -> Result<Languages, LanguageError> {
        Languages::from_toml_with(text, &HostRuntimes { dirs })
    }

    /// The Debian packages of every language in `text`, by id, whether present or not.
    pub fn packages(text: &str) -> Result<Vec<(String, Vec<String>)>, LanguageError> {
        let file: File = toml::from_str(text)?;
        Ok(file.language.into_iter().map(|d| (d.id, d.packages)).collect())
    }

    /// Parses `text` and keeps the languages whose binaries `rt` has.
    pub fn from_toml_with(text: &str, rt: &dyn Runtimes) -> Result<Languages, LanguageError> {
        let file: File = toml::from_str(text)?;
        let mut list = Vec::new();
        let mut version_cmds = Vec::new();
        for def in file.language {
            if def.run.is_empty() || def.version.is_empty() || def.file.contains('/') {
                return Err(LanguageError::Invalid {
                    id: def.id,
                    why: "needs run, version and a plain file name".into(),
                });
            }
            let compile = match &def.compile {
                Some(c) => match resolve_argv(c, rt) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            let (Some(run), Some(version_cmd)) = (resolve_argv(&def.run, rt), resolve_argv(&def.version, rt)) else {
                tracing::debug!(language = %def.id, "runtime not found; not offered");
                continue;
            };
            if let Some(missing) = def.requires.iter().find(|b| resolve_binary(b, rt).is_none()) {
                tracing::debug!(language = %def.id, %missing, "needed binary not found; not offered");
                continue;
            }
            let prestart = match (&def.prestart, &def.loader) {
                (Some(argv), Some(name)) => {
                    let text = LOADERS.iter().find(|(n, _)| n == name).map(|(_, t)| *t).ok_or_else(|| {
                        LanguageError::Invalid { id: def.id.clone(), why: format!("unknown loader {name:?}") }
                    })?;
                    resolve_argv(argv, rt).map(|a| a.iter().map(|w| w.replace("{loader}", text)).collect())
                }
                (None, None) => None,
                _ => return Err(LanguageError::Invalid { id: def.id, why: "prestart and loader go together".into() }),
            };
            let mut env: Vec<(String, String)> = BASE_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            env.extend(def.env);
            version_cmds.push(version_cmd);
            list.push(Language {
                version: String::new(),
                id: def.id,
                name: def.name,
                aliases: def.aliases,
                compiled: compile.is_some(),
                file: def.file,
                hide_code_file: def.hide_code_file,
                compile,
                run,
                prestart,
                env,
                compile_limits: raise(&Limits::COMPILE, &def.limits.compile, &Limits::MAX),
                run_floor: def.limits.run,
                support: def
                    .support
                    .into_iter()
                    .map(|(path, text)| FileSpec { path, data: text.into_bytes(), executable: false })
                    .collect(),
            });
        }
        // Each probe starts a runtime (a JVM takes a few hundred ms): all at once, not in turn.
        std::thread::scope(|s| {
            let probes: Vec<_> = version_cmds.iter().map(|c| s.spawn(move || rt.version(c))).collect();
            for (lang, probe) in list.iter_mut().zip(probes) {
                lang.version = probe.join().unwrap_or_else(|_| "unknown".into());
            }
        });
        Ok(Languages { list })
    }

    /// By id or alias, case-insensitive.
    pub fn get(&self, name: &str) -> Option<&Language> {
        let name = name.to_ascii_lowercase();
        self.list.iter().find(|l| l.id == name || l.aliases.contains(&name))
    }

    pub fn list(&self) -> &[Language] {
        &self.list
    }
}

/// `argv` with `{file}` (the entry's path), `{stem}` (its file name without extension) and
/// `{memory_mb}` (the step's memory limit, for runtimes that size their heap by it) filled
/// in; an argument that is exactly `{sources}` becomes every file with the entry's
/// extension, the entry first.
fn fill(argv: &[String], entry: &str, files: &[FileSpec], limits: &Limits) -> Vec<String> {
    let name = entry.rsplit('/').next().unwrap_or(entry);
    let (stem, ext) = name.rsplit_once('.').map_or((name, None), |(s, e)| (s, Some(e)));
    let mut out = Vec::with_capacity(argv.len());
    for a in argv {
        if a == "{sources}" {
            out.push(entry.to_string());
            let same_ext = |p: &str| ext.is_some_and(|e| p.rsplit_once('.').is_some_and(|(_, pe)| pe == e));
            out.extend(files.iter().filter(|f| f.path != entry && same_ext(&f.path)).map(|f| f.path.clone()));
        } else {
            let a = a.replace("{file}", entry).replace("{stem}", stem);
            out.push(a.replace("{memory_mb}", &limits.memory_mb.to_string()));
        }
    }
    out
}

impl Language {
    /// The limits of a run that asked for `req`: each field the request sets wins; each it
    /// leaves out is `defaults`' raised to what the language needs (languages.toml
    /// `limits.run`); every field is capped by `max`.
    pub fn limits(&self, req: &LimitsRequest, defaults: &Limits, max: &Limits) -> Limits {
        Limits::resolve(req, &raise(defaults, &self.run_floor, max), max)
    }

    /// The limits of this language's compile step.
    pub fn compile_limits(&self) -> Limits {
        self.compile_limits
    }

    /// The agent's run request for `input`. The entry file is `input.entry`, which must
    /// name one of the files, or else the first file.
    pub fn job(&self, input: JobInput) -> Result<AgentRun, LanguageError> {
        let entry = match &input.entry {
            Some(e) if input.files.iter().any(|f| &f.path == e) => e.clone(),
            Some(e) => return Err(LanguageError::NoSuchEntry { entry: e.clone() }),
            None => input.files.first().map(|f| f.path.clone()).unwrap_or_else(|| self.file.clone()),
        };
        Ok(self.build(entry, input))
    }

    fn build(&self, entry: String, mut input: JobInput) -> AgentRun {
        for s in &self.support {
            if !input.files.iter().any(|f| f.path == s.path) {
                input.files.push(s.clone());
            }
        }
        let compile = self
            .compile
            .as_ref()
            .map(|c| Step { argv: fill(c, &entry, &input.files, &self.compile_limits), limits: self.compile_limits });
        let mut argv = fill(&self.run, &entry, &input.files, &input.limits);
        argv.extend(input.args.iter().cloned());
        let warm_argv = self.prestart.as_ref().map(|_| std::iter::once(entry.clone()).chain(input.args).collect());
        AgentRun {
            files: input.files,
            compile,
            run: Step { argv, limits: input.limits },
            env: self.env.clone(),
            stdin: input.stdin,
            keep_stdin_open: input.keep_stdin_open,
            warm_argv,
        }
    }

    /// What to send a sandbox so it holds this language's interpreter started and waiting
    /// (`None` for languages without a prestart loader).
    pub fn prepare(&self) -> Option<Prepare> {
        Some(Prepare { argv: self.prestart.clone()?, env: self.env.clone() })
    }

    /// Where single-file `code` is stored: the language's entry file name, hidden (`.main.py`)
    /// unless the toolchain names things after the file (`hide_code_file = false` in
    /// languages.toml), so the work dir a program lists holds only what it made (the
    /// `concurrent-isolation` field case lists it and expects only its own file).
    pub fn code_file(&self) -> String {
        if self.hide_code_file {
            format!(".{}", self.file)
        } else {
            self.file.clone()
        }
    }

    /// A job for single-file `code` stored under [`Language::code_file`].
    pub fn job_for_code(&self, code: &[u8], stdin: Vec<u8>, limits: Limits) -> AgentRun {
        let files = vec![FileSpec { path: self.code_file(), data: code.to_vec(), executable: false }];
        self.build(self.code_file(), JobInput { files, stdin, limits, ..JobInput::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_come_out_of_banners() {
        assert_eq!(version_number("Python 3.11.2\n").as_deref(), Some("3.11.2"));
        assert_eq!(version_number("v20.20.2\n").as_deref(), Some("20.20.2"));
        assert_eq!(version_number("gcc (Debian 12.2.0-14+deb12u1) 12.2.0\n").as_deref(), Some("12.2.0"));
        assert_eq!(
            version_number("GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)").as_deref(),
            Some("5.2.15")
        );
        assert_eq!(version_number("go version go1.19.8 linux/amd64").as_deref(), Some("1.19.8"));
        assert_eq!(version_number("openjdk version \"17.0.21.1\" 2025-10-21").as_deref(), Some("17.0.21.1"));
        assert_eq!(version_number("OpenJDK 64-Bit Server VM 17.0.2").as_deref(), Some("17.0.2"));
        assert_eq!(version_number("no digits here"), None);
    }

    #[test]
    fn missing_runtimes_are_not_offered_and_present_ones_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fakepy");
        std::fs::write(&bin, "#!/bin/sh\necho 'Fake 1.2.3'\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&bin).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let text = r#"
            [[language]]
            id = "fake"
            name = "Fake"
            aliases = ["fk"]
            file = "main.fk"
            run = ["fakepy", "{file}"]
            version = ["fakepy"]
            [[language]]
            id = "absent"
            name = "Absent"
            file = "x"
            run = ["no-such-binary-anywhere"]
            version = ["no-such-binary-anywhere"]
        "#;
        let langs = Languages::from_toml(text, &[dir.path()]).unwrap();
        assert_eq!(langs.list().len(), 1);
        let fake = langs.get("FK").unwrap();
        assert_eq!(fake.version, "1.2.3");
        let job = fake
            .job(JobInput {
                files: vec![FileSpec { path: "main.fk".into(), data: b"x".to_vec(), executable: false }],
                args: vec!["a1".into()],
                ..JobInput::default()
            })
            .unwrap();
        assert_eq!(job.run.argv, vec![bin.display().to_string(), "main.fk".into(), "a1".into()]);
        assert!(job.env.iter().any(|(k, v)| k == "PATH" && v.starts_with("/usr/local/bin")));
        assert!(langs.get("absent").is_none());
    }

    #[test]
    fn the_embedded_file_parses() {
        let file: File = toml::from_str(DEFAULT_LANGUAGES).unwrap();
        let ids: Vec<&str> = file.language.iter().map(|l| l.id.as_str()).collect();
        for needed in [
            "python",
            "javascript",
            "typescript",
            "bash",
            "c",
            "cpp",
            "rust",
            "go",
            "java",
            "scala",
            "csharp",
            "ruby",
            "php",
            "perl",
            "lua",
            "haskell",
            "ocaml",
            "r",
            "sql",
        ] {
            assert!(ids.contains(&needed), "{needed} missing");
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "an id is declared twice");
    }

    fn one(text: &str) -> Language {
        let dir = tempfile::tempdir().unwrap();
        let langs = Languages::from_toml(text, &[dir.path()]).unwrap();
        langs.list()[0].clone()
    }

    fn file(path: &str) -> FileSpec {
        FileSpec { path: path.into(), data: Vec::new(), executable: false }
    }

    const JAVA_LIKE: &str = r#"
        [[language]]
        id = "j"
        name = "J"
        file = "Main.j"
        compile = ["/bin/jc", "-mem={memory_mb}", "{sources}"]
        run = ["/bin/jr", "{stem}", "-mem={memory_mb}"]
        version = ["/bin/true"]
        support = { "extra.j" = "support text" }
        limits = { run = { pids = 128, memory_mb = 100 }, compile = { wall_ms = 40000 } }
    "#;

    #[test]
    fn the_entry_picks_the_file_and_sources_take_its_extension() {
        let lang = one(JAVA_LIKE);
        let job = lang
            .job(JobInput {
                files: vec![file("Helper.j"), file("notes.txt"), file("App.j")],
                entry: Some("App.j".into()),
                ..JobInput::default()
            })
            .unwrap();
        let compile = job.compile.unwrap();
        assert_eq!(compile.argv, ["/bin/jc", "-mem=1024", "App.j", "Helper.j", "extra.j"]);
        assert_eq!(job.run.argv, ["/bin/jr", "App", "-mem=256"]);
        assert!(job.files.iter().any(|f| f.path == "extra.j" && f.data == b"support text"));
        let err =
            lang.job(JobInput { files: vec![file("App.j")], entry: Some("Nope.j".into()), ..JobInput::default() });
        assert!(matches!(err, Err(LanguageError::NoSuchEntry { .. })));
        // Without an entry, the first file is the entry.
        let job = lang.job(JobInput { files: vec![file("B.j"), file("A.j")], ..JobInput::default() }).unwrap();
        assert_eq!(job.run.argv[1], "B");
    }

    #[test]
    fn a_language_raises_defaults_but_the_request_wins_and_max_caps() {
        let lang = one(JAVA_LIKE);
        let none = LimitsRequest::default();
        let l = lang.limits(&none, &Limits::DEFAULT, &Limits::MAX);
        assert_eq!(l.pids, 128);
        assert_eq!(l.memory_mb, Limits::DEFAULT.memory_mb, "a language only raises a default");
        assert_eq!(l.wall_ms, Limits::DEFAULT.wall_ms);
        let asked = LimitsRequest { pids: Some(10), ..LimitsRequest::default() };
        assert_eq!(lang.limits(&asked, &Limits::DEFAULT, &Limits::MAX).pids, 10);
        let small_max = Limits { pids: 100, ..Limits::MAX };
        assert_eq!(lang.limits(&none, &Limits::DEFAULT, &small_max).pids, 100);
        assert_eq!(lang.compile_limits().wall_ms, 40_000);
        assert_eq!(lang.compile_limits().memory_mb, Limits::COMPILE.memory_mb);
    }

    #[test]
    fn a_missing_required_binary_hides_the_language() {
        let text = r#"
            [[language]]
            id = "asm"
            name = "Asm"
            file = "main.asm"
            compile = ["/bin/sh", "-c", "no-such-assembler"]
            run = ["./main"]
            version = ["/bin/true"]
            requires = ["no-such-assembler"]
        "#;
        let dir = tempfile::tempdir().unwrap();
        assert!(Languages::from_toml(text, &[dir.path()]).unwrap().list().is_empty());
    }
}
