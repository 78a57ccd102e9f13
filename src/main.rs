//! The `tandem` command: parse the command line, load the config, hand over
//! to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tandem::config::{self, EngineChoice, LogTarget};
use tandem::daemon::{self, Options, Stage};
use tandem::engine;

/// A static-file HTTP/1.1 and HTTP/2 server daemon with epoll and io_uring engines.
#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    disable_version_flag = true,
    after_help = "A flag that sets a config key wins over the file, at start and on every reload."
)]
struct Cli {
    /// Config file (TOML); without it, built-in defaults (./html on 127.0.0.1:8080)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config and what a start needs, and exit: 0 if it would start, else 2
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Signal the running tandem (found through its pidfile): reload, stop or reopen
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    /// Listen on ADDR instead of the config's `listen` (repeatable)
    #[arg(long = "listen", value_name = "ADDR", value_parser = config::parse_address)]
    listen: Vec<SocketAddr>,
    /// Serve DIR instead of the config's `root`
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// I/O engine instead of the config's `engine`: auto, epoll or io_uring
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    engine: Option<EngineChoice>,
    /// Pidfile instead of the config's `pidfile` (with -s: where to find the server)
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Error log instead of the config's `error_log`: a file, stderr or off
    #[arg(long = "error-log", value_name = "FILE", value_parser = config::parse_log_target)]
    error_log: Option<LogTarget>,
    /// Access log instead of the config's `access_log`: a file, stderr or off
    #[arg(long = "access-log", value_name = "FILE", value_parser = config::parse_log_target)]
    access_log: Option<LogTarget>,
    /// Detach into the background (`daemon = true`); the logs must not be stderr
    #[arg(long)]
    daemon: bool,
    /// Print the version, the git revision and whether io_uring is usable here
    #[arg(short = 'V', long = "version")]
    version: bool,
}

fn parse_engine(s: &str) -> Result<EngineChoice, String> {
    EngineChoice::parse(s).ok_or_else(|| format!("{s:?} is not one of auto, epoll, io_uring"))
}

fn version() -> String {
    let mut out = format!(
        "tandem {} (git {})\n",
        env!("CARGO_PKG_VERSION"),
        env!("TANDEM_GIT_REV")
    );
    match engine::select(EngineChoice::Auto) {
        Ok((e, None)) => out.push_str(&format!(
            "io_uring: usable on this kernel\nengine auto: {}\n",
            e.name()
        )),
        Ok((e, Some(why))) => out.push_str(&format!(
            "io_uring: unavailable: {why}\nengine auto: {}\n",
            e.name()
        )),
        // `auto` never fails; should it, say so rather than guess.
        Err(e) => out.push_str(&format!("engine auto: {e}\n")),
    }
    out
}

/// A config that cannot run: each problem on its own line, exit 2.
fn each_line(problems: Vec<String>) -> ExitCode {
    for p in problems {
        eprintln!("tandem: {p}");
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // Help or a usage error; if stdout/stderr cannot take it, there
            // is nowhere else to write, and the exit code still says it.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        print!("{}", version());
        return ExitCode::SUCCESS;
    }
    if cli.test && cli.signal.is_some() {
        eprintln!("tandem: -t checks a config and -s signals a running server: give one of them");
        return ExitCode::from(2);
    }
    for (i, a) in cli.listen.iter().enumerate() {
        if cli.listen[..i].contains(a) {
            eprintln!("tandem: --listen {a} is given twice");
            return ExitCode::from(2);
        }
    }
    let opts = Options {
        config_path: cli.config.clone(),
        engine: cli.engine,
        daemon: cli.daemon,
        listen: cli.listen.clone(),
        root: cli.root.clone(),
        pidfile: cli.pidfile.clone(),
        error_log: cli.error_log.clone(),
        access_log: cli.access_log.clone(),
    };
    if let Some(what) = &cli.signal {
        return match daemon::send_signal(&opts, what) {
            // The outcome on stdout, a failure on stderr: `>/dev/null`
            // (a logrotate postrotate, a cron job) silences only success.
            Ok(said) => {
                println!("tandem: {said}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tandem: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        };
    }
    let (cfg, origins) = match opts.load() {
        Ok(c) => c,
        Err(e) => return each_line(e.each()),
    };
    // What -t checks is what a start checks: the same function, before
    // anything is opened or bound.
    let checked = match daemon::preflight(&cfg, &origins, Stage::Start) {
        Ok(c) => c,
        Err(e) => return each_line(e.each()),
    };
    if cli.test {
        let picked = match engine::select(cfg.engine) {
            Ok((e, _)) => e,
            Err(e) => {
                eprintln!("tandem: {}{e}", origins.of("engine"));
                return ExitCode::from(2);
            }
        };
        let listen: Vec<String> = cfg.listen.iter().map(|a| a.to_string()).collect();
        eprintln!(
            "tandem: configuration {} is ok: root {}, listen {}, engine {} ({})",
            origins.name(),
            daemon::check::absolute(&cfg.root).display(),
            listen.join(" "),
            cfg.engine,
            picked.name()
        );
        return ExitCode::SUCCESS;
    }
    let errors_on_stderr = cfg.error_log == tandem::log::LogTarget::Stderr;
    let level = cfg.level();
    if let Err(e) = tandem::log::init_error_log(&cfg.error_log, level) {
        eprintln!("tandem: error_log: {e}");
        return ExitCode::from(1);
    }
    // SAFETY: main has started no thread (parsing, config, the checks and
    // the error log run on this one), and nothing has touched the
    // descriptors systemd may have passed.
    match unsafe { daemon::run(opts, cfg, checked) } {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tandem::error!("{e}");
            if !errors_on_stderr {
                eprintln!("tandem: {e}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
