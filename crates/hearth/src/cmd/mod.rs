//! One module per subcommand; each exposes clap `Args` and `async fn run(args)`, returning
//! the process exit code.

pub mod cluster;
pub mod doctor;
pub mod executor;
pub mod gateway;
pub mod run;
pub mod up;
