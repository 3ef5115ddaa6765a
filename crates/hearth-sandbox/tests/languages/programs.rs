//! The per-language programs of `programs.toml`: loading them and turning one into a job.
//! Shared by `tests/languages.rs` and `examples/language_timing.rs`.

#![allow(dead_code)]

use hearth_proto::frame::{AgentRun, FileSpec};
use hearth_proto::{Limits, LimitsRequest};
use hearth_sandbox::{JobInput, Language};
use serde::Deserialize;

const PROGRAMS: &str = include_str!("programs.toml");

#[derive(Debug, Deserialize)]
struct Table {
    program: Vec<Program>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub lang: String,
    /// Defaults to `lang`; multi-file variants name themselves.
    name: Option<String>,
    pub code: Option<String>,
    #[serde(default)]
    pub files: Vec<ProgramFile>,
    pub entry: Option<String>,
    #[serde(default = "default_stdin")]
    pub stdin: String,
    #[serde(default = "default_stdout")]
    pub stdout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramFile {
    pub path: String,
    pub text: String,
}

fn default_stdin() -> String {
    "20 22\n".into()
}

fn default_stdout() -> String {
    "42\n".into()
}

impl Program {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.lang)
    }

    /// The job for `language`, with the language's default limits.
    pub fn job(&self, language: &Language) -> AgentRun {
        let files = match &self.code {
            Some(code) => {
                vec![FileSpec { path: language.code_file(), data: code.as_bytes().to_vec(), executable: false }]
            }
            None => self
                .files
                .iter()
                .map(|f| FileSpec { path: f.path.clone(), data: f.text.as_bytes().to_vec(), executable: false })
                .collect(),
        };
        let limits = language.limits(&LimitsRequest::default(), &Limits::DEFAULT, &Limits::MAX);
        let input = JobInput {
            files,
            stdin: self.stdin.as_bytes().to_vec(),
            limits,
            entry: self.entry.clone(),
            ..JobInput::default()
        };
        language.job(input).unwrap_or_else(|e| panic!("{}: {e}", self.name()))
    }
}

pub fn load() -> Vec<Program> {
    let table: Table = toml::from_str(PROGRAMS).expect("programs.toml parses");
    table.program
}

/// The ids `languages.toml` declares, whether or not this host has them.
pub fn declared_ids() -> Vec<String> {
    #[derive(Deserialize)]
    struct File {
        language: Vec<Id>,
    }
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let file: File = toml::from_str(hearth_sandbox::languages::DEFAULT_LANGUAGES).expect("languages.toml parses");
    file.language.into_iter().map(|l| l.id).collect()
}
