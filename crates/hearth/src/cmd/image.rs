//! `hearth image build` and `hearth image info`: the guest image of the VM drivers.

use std::path::PathBuf;

use hearth_image::{BuildConfig, Image};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Build (or find in the cache) a guest image: kernel, initramfs with the agent, root
    /// file system with the languages. Prints progress, then the image's directory.
    Build(BuildArgs),
    /// Say what is in an image.
    Info(InfoArgs),
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Languages to put in the image (ids of languages.toml), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = hearth_image::DEFAULT_IMAGE_LANGUAGES.iter().map(|s| s.to_string()))]
    pub languages: Vec<String>,
    /// Every language of languages.toml (about 1.5 GB of packages).
    #[arg(long, conflicts_with = "languages")]
    pub all_languages: bool,
    /// More Debian packages to install.
    #[arg(long, value_delimiter = ',')]
    pub packages: Vec<String>,
    /// The static agent that becomes the guest's init (default: beside this executable).
    #[arg(long, env = "HEARTH_AGENT")]
    pub agent: Option<PathBuf>,
    /// Cache directory (default: $HEARTH_IMAGE_CACHE or /var/cache/hearth).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Debian suite (default: the host's).
    #[arg(long)]
    pub suite: Option<String>,
    /// Print the manifest as JSON at the end instead of the directory.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The image directory (default: $HEARTH_IMAGE, else the last one built).
    pub image: Option<PathBuf>,
    /// The whole manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        ImageCommand::Build(b) => build(b).await,
        ImageCommand::Info(i) => info(i),
    }
}

async fn build(args: BuildArgs) -> anyhow::Result<u8> {
    let agent = args
        .agent
        .or_else(hearth_sandbox::locate_agent)
        .ok_or_else(|| anyhow::anyhow!("no hearth-agent binary found: build it, or pass --agent"))?;
    let mut config = BuildConfig::new(agent);
    config.languages = if args.all_languages { Vec::new() } else { args.languages };
    config.extra_packages = args.packages;
    config.suite = args.suite;
    if let Some(c) = args.cache {
        config.cache = c;
    }
    let json = args.json;
    let image = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        hearth_image::build(&config, &mut |line| eprintln!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64()))
    })
    .await??;
    if json {
        println!("{}", serde_json::to_string_pretty(&image.manifest)?);
    } else {
        print!("{}", image.info());
    }
    Ok(0)
}

fn info(args: InfoArgs) -> anyhow::Result<u8> {
    let dir = args.image.unwrap_or_else(hearth_image::default_image);
    let image = Image::open(&dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&image.manifest)?);
    } else {
        print!("{}", image.info());
    }
    Ok(0)
}
