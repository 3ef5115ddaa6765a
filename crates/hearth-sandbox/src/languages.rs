//! The languages on offer, from one data file (`languages.toml`, embedded; a file of the
//! same shape can replace it). Only runtimes that exist on the host are offered; their
//! binaries are resolved once to absolute paths and every program gets a clean, fixed
//! environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_proto::frame::{AgentRun, FileSpec, Prepare, Step};
use hearth_proto::Limits;
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
    compile: Option<Vec<String>>,
    run: Vec<String>,
    prestart: Option<Vec<String>>,
    loader: Option<String>,
    version: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
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
    #[serde(skip)]
    compile: Option<Vec<String>>,
    #[serde(skip)]
    run: Vec<String>,
    /// The interpreter started ahead of the code, waiting for it (see `loaders/`).
    #[serde(skip)]
    prestart: Option<Vec<String>>,
    #[serde(skip)]
    env: Vec<(String, String)>,
}

/// What one run of a language needs besides the language.
#[derive(Debug, Clone, Default)]
pub struct JobInput {
    pub files: Vec<FileSpec>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub limits: Limits,
    pub keep_stdin_open: bool,
}

/// The languages on offer.
#[derive(Debug, Clone, Default)]
pub struct Languages {
    list: Vec<Language>,
}

fn resolve_binary(word: &str, dirs: &[&Path]) -> Option<String> {
    if word.starts_with('/') || word.starts_with("./") {
        return Some(word.to_string());
    }
    dirs.iter().map(|d| d.join(word)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

fn resolve_argv(argv: &[String], dirs: &[&Path]) -> Option<Vec<String>> {
    let (first, rest) = argv.split_first()?;
    let mut out = vec![resolve_binary(first, dirs)?];
    out.extend(rest.iter().cloned());
    Some(out)
}

/// The first `digits.digits...` run in a version banner ("gcc (Debian 12.2.0-14) 12.2.0").
fn version_number(banner: &str) -> Option<String> {
    let line = banner.lines().find(|l| !l.trim().is_empty())?;
    line.split_whitespace().find_map(|tok| {
        let tok = tok.trim_start_matches(['v', '(']);
        let n: String = tok.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        (n.contains('.') && n.starts_with(|c: char| c.is_ascii_digit())).then(|| n.trim_end_matches('.').to_string())
    })
}

fn probe_version(argv: &[String]) -> String {
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).env_clear().env("LANG", "C.UTF-8").output();
    match out {
        Ok(o) => {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            version_number(&text).unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string())
        }
        Err(_) => "unknown".into(),
    }
}

impl Languages {
    /// The embedded languages that exist on this host.
    pub fn detect() -> Result<Languages, LanguageError> {
        let dirs: Vec<&Path> = SEARCH_DIRS.iter().map(Path::new).collect();
        Languages::from_toml(DEFAULT_LANGUAGES, &dirs)
    }

    /// Languages from a file of `languages.toml`'s shape.
    pub fn from_file(path: &Path) -> Result<Languages, LanguageError> {
        let text = std::fs::read_to_string(path).map_err(|source| LanguageError::Read { path: path.into(), source })?;
        let dirs: Vec<&Path> = SEARCH_DIRS.iter().map(Path::new).collect();
        Languages::from_toml(&text, &dirs)
    }

    /// Parses `text` and keeps the languages whose binaries exist in `dirs`.
    pub fn from_toml(text: &str, dirs: &[&Path]) -> Result<Languages, LanguageError> {
        let file: File = toml::from_str(text)?;
        let mut list = Vec::new();
        for def in file.language {
            if def.run.is_empty() || def.version.is_empty() || def.file.contains('/') {
                return Err(LanguageError::Invalid {
                    id: def.id,
                    why: "needs run, version and a plain file name".into(),
                });
            }
            let compile = match &def.compile {
                Some(c) => match resolve_argv(c, dirs) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            let (Some(run), Some(version_cmd)) = (resolve_argv(&def.run, dirs), resolve_argv(&def.version, dirs))
            else {
                tracing::debug!(language = %def.id, "runtime not found; not offered");
                continue;
            };
            let prestart = match (&def.prestart, &def.loader) {
                (Some(argv), Some(name)) => {
                    let text = LOADERS.iter().find(|(n, _)| n == name).map(|(_, t)| *t).ok_or_else(|| {
                        LanguageError::Invalid { id: def.id.clone(), why: format!("unknown loader {name:?}") }
                    })?;
                    resolve_argv(argv, dirs).map(|a| a.iter().map(|w| w.replace("{loader}", text)).collect())
                }
                (None, None) => None,
                _ => return Err(LanguageError::Invalid { id: def.id, why: "prestart and loader go together".into() }),
            };
            let mut env: Vec<(String, String)> = BASE_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            env.extend(def.env);
            list.push(Language {
                version: probe_version(&version_cmd),
                id: def.id,
                name: def.name,
                aliases: def.aliases,
                compiled: compile.is_some(),
                file: def.file,
                compile,
                run,
                prestart,
                env,
            });
        }
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

fn fill(argv: &[String], file: &str) -> Vec<String> {
    argv.iter().map(|a| a.replace("{file}", file)).collect()
}

impl Language {
    /// The agent's run request for `input`. The entry file is the first file.
    pub fn job(&self, input: JobInput) -> AgentRun {
        let entry = input.files.first().map(|f| f.path.clone()).unwrap_or_else(|| self.file.clone());
        let compile = self.compile.as_ref().map(|c| Step { argv: fill(c, &entry), limits: Limits::COMPILE });
        let mut argv = fill(&self.run, &entry);
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

    /// A job for single-file `code` stored under the language's entry file name.
    pub fn job_for_code(&self, code: &[u8], stdin: Vec<u8>, limits: Limits) -> AgentRun {
        let files = vec![FileSpec { path: self.file.clone(), data: code.to_vec(), executable: false }];
        self.job(JobInput { files, stdin, limits, ..JobInput::default() })
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
        let job = fake.job(JobInput {
            files: vec![FileSpec { path: "main.fk".into(), data: b"x".to_vec(), executable: false }],
            args: vec!["a1".into()],
            ..JobInput::default()
        });
        assert_eq!(job.run.argv, vec![bin.display().to_string(), "main.fk".into(), "a1".into()]);
        assert!(job.env.iter().any(|(k, v)| k == "PATH" && v.starts_with("/usr/local/bin")));
        assert!(langs.get("absent").is_none());
    }

    #[test]
    fn the_embedded_file_parses() {
        let file: File = toml::from_str(DEFAULT_LANGUAGES).unwrap();
        let ids: Vec<&str> = file.language.iter().map(|l| l.id.as_str()).collect();
        for needed in ["python", "javascript", "bash", "c", "cpp"] {
            assert!(ids.contains(&needed), "{needed} missing");
        }
    }
}
