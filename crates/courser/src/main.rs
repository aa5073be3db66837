//! The `courser` command line: a thin layer over `courser-server`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use courser_config::{LoadOptions, LogEncoding, LogLevel, LogMode};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "courser",
    version,
    about = "A RoadRunner-compatible PHP application server",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

mod control;
mod jobs;

#[derive(clap::Args, Clone)]
pub(crate) struct ConfigArgs {
    /// Config file (RoadRunner's .rr.yaml format).
    #[arg(short = 'c', long = "config", default_value = ".rr.yaml")]
    pub(crate) config: PathBuf,
    /// Working directory (default: the config file's directory).
    #[arg(short = 'w', long = "workdir", alias = "WorkDir")]
    workdir: Option<PathBuf>,
    /// Override a config key: -o http.pool.num_workers=4 (repeatable).
    #[arg(short = 'o', long = "override")]
    pub(crate) overrides: Vec<String>,
    /// Load environment variables from a dotenv file (also DOTENV_PATH).
    #[arg(long = "dotenv", env = "DOTENV_PATH")]
    pub(crate) dotenv: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the workers of the running server (over RPC): pid, state, jobs, memory, CPU, age.
    Workers {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Plugins to show (default: every plugin with workers).
        plugins: Vec<String>,
        /// Refresh the table every second until interrupted.
        #[arg(short = 'i', long = "interactive")]
        interactive: bool,
    },
    /// Replace the workers of the running server, make-before-break (over RPC).
    Reset {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Plugins to reset (default: all).
        plugins: Vec<String>,
    },
    /// Jobs pipelines of the running server (over RPC): list, stat, pause, resume, destroy.
    Jobs {
        /// list | stat | pause | resume | destroy
        #[arg(value_enum)]
        action: jobs::Action,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Pipelines (for pause, resume and destroy).
        pipelines: Vec<String>,
    },
    /// Ask the running server to stop gracefully (over RPC).
    Stop {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Run the configured pools and listeners until SIGTERM or SIGINT.
    Serve {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Only validate the config, print warnings, and exit.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { cfg, check } => serve(cfg, check),
        Cmd::Workers {
            cfg,
            plugins,
            interactive,
        } => control::workers(&cfg, plugins, interactive),
        Cmd::Reset { cfg, plugins } => control::reset(&cfg, plugins),
        Cmd::Stop { cfg } => control::stop(&cfg),
        Cmd::Jobs {
            action,
            cfg,
            pipelines,
        } => jobs::run(&cfg, action, pipelines),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("courser: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause only when its text adds something.
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn serve(args: ConfigArgs, check: bool) -> anyhow::Result<()> {
    let opts = LoadOptions {
        path: args.config.clone(),
        overrides: args.overrides.clone(),
        dotenv: args.dotenv.clone(),
        env: None,
    };
    let loaded = courser_config::load(&opts)?;
    if check {
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        println!("{}: the config is valid", args.config.display());
        return Ok(());
    }
    init_logs(&loaded.config.logs)?;
    for w in &loaded.warnings {
        tracing::warn!(key = %w.key, "{w}");
    }
    // Like RoadRunner: run from the config's directory unless -w is given.
    let workdir = match &args.workdir {
        Some(w) => w.clone(),
        None => args
            .config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    // Workers are started in the working directory *as written* (not resolved),
    // so a deploy that flips a `current` symlink is picked up by the next reset.
    let logical_workdir = std::path::absolute(&workdir).unwrap_or_else(|_| workdir.clone());
    std::env::set_current_dir(&workdir).with_context(|| {
        format!(
            "cannot change to the working directory {}",
            workdir.display()
        )
    })?;
    let run = courser_server::RunOptions {
        dotenv: loaded.dotenv.clone(),
        workdir: Some(logical_workdir),
    };
    let rt = runtime(std::env::var("COURSER_THREADS").ok().as_deref())
        .context("cannot start the async runtime")?;
    rt.block_on(courser_server::serve(&loaded.config, &run))?;
    Ok(())
}

/// The async runtime's threads: `COURSER_THREADS` when set to a positive
/// number, else one on machines of up to two CPUs (measured, see below) and
/// one per CPU above that (tokio's default; not benchmarked here).
fn runtime_threads(env: Option<&str>, cpus: usize) -> usize {
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(if cpus <= 2 { 1 } else { cpus })
}

/// Builds the async runtime. One thread runs tokio's current-thread scheduler:
/// every socket, pipe and timer is then served by one event loop, with no
/// wake-ups between runtime threads and no work stealing. On a 2-CPU machine,
/// where the PHP workers need the CPUs, that costs less per request than two
/// runtime threads (bench/README.md: hello world through the lean worker,
/// Courser's CPU per request 19.2 -> 15.9 µs, req/s +20 %). Bigger machines get
/// a multi-threaded runtime with a thread per CPU.
fn runtime(threads_env: Option<&str>) -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut b = match runtime_threads(threads_env, cpus) {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    b.enable_all().build()
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Panic | LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// The tracing targets that make up each plugin's log channel (`logs.channels.<plugin>`).
fn channel_targets(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "http" => &["courser_http", "courser::http::access"],
        "server" | "pool" => &["courser_pool", "courser_worker", "courser::worker"],
        "rpc" => &["courser_rpc"],
        "metrics" => &["courser_metrics"],
        "status" => &["courser_status"],
        "reload" => &["courser_reload"],
        "jobs" => &["courser_jobs"],
        _ => &[],
    }
}

/// Sets up logging from `logs.*`: mode (development, production = JSON, raw =
/// messages only, off), level, encoding, output (stderr, stdout or a file,
/// appended) and per-plugin levels. `COURSER_LOG` (a tracing filter) overrides
/// the levels.
fn init_logs(cfg: &courser_config::LogsConfig) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    if matches!(cfg.mode, LogMode::Off) {
        return Ok(());
    }
    let mut directives = format!(
        // The broker clients log their own view of failures the jobs drivers
        // already report in one sentence each (e.g. lapin's "Connection
        // error" when Courser closes its own connection at stop).
        "{},hyper=warn,h2=warn,rustls=warn,tower_http=warn,lapin=off,amq_protocol=off,async_nats=error,redis=warn",
        level_name(cfg.level)
    );
    for (plugin, ch) in &cfg.channels {
        let Some(level) = ch.level else { continue };
        let targets = channel_targets(plugin);
        if targets.is_empty() {
            eprintln!("warning: logs.channels.{plugin}: no plugin of that name logs in Courser; the setting is ignored");
        }
        for t in targets {
            directives.push_str(&format!(",{t}={}", level_name(level)));
        }
    }
    let filter =
        EnvFilter::try_from_env("COURSER_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    let (writer, terminal) = match cfg.output.as_str() {
        "" | "stderr" => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
        "stdout" => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("logs.output: cannot open {path} for appending"))?;
            (BoxMakeWriter::new(std::sync::Arc::new(file)), false)
        }
    };
    let json = matches!(cfg.encoding, LogEncoding::Json) || matches!(cfg.mode, LogMode::Production);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal && !json);
    let _ = if matches!(cfg.mode, LogMode::Raw) {
        builder
            .without_time()
            .with_level(false)
            .with_target(false)
            .try_init()
    } else if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runtime_threads;

    #[test]
    fn runtime_threads_follow_the_cpus_unless_set() {
        for (env, cpus, want) in [
            (None, 1, 1),
            (None, 2, 1),
            (None, 3, 3),
            (None, 8, 8),
            (Some("3"), 2, 3),
            (Some(" 1 "), 16, 1),
            (Some("0"), 8, 8),
            (Some("many"), 2, 1),
        ] {
            assert_eq!(runtime_threads(env, cpus), want, "{env:?} on {cpus} CPUs");
        }
    }
}
