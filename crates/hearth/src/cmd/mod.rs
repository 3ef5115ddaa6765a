//! One module per subcommand; each exposes clap `Args` and `async fn run(args)`, returning
//! the process exit code.

pub mod doctor;
pub mod executor;
pub mod gateway;
pub mod image;
pub mod run;
pub mod up;
