//! The `tandem` command: parse the command line, load the config, hand over
//! to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tandem::config::{self, EngineChoice};
use tandem::daemon::{self, Options, Stage};
use tandem::engine;

/// A static-file HTTP/1.1 server daemon with epoll and io_uring engines.
#[derive(Parser, Debug)]
#[command(name = "tandem", disable_version_flag = true)]
struct Cli {
    /// Config file (TOML). Without it, built-in defaults: serve ./html on 127.0.0.1:8080.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config (and what a start would need, short of binding) and exit: 0 if it
    /// would start, 2 with FILE:LINE: error otherwise.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Listen on ADDR instead of the config's `listen` (repeatable). Wins on reload too.
    #[arg(long = "listen", value_name = "ADDR", value_parser = config::parse_address)]
    listen: Vec<SocketAddr>,
    /// Serve DIR instead of the config's `root`. Wins on reload too.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Override the config's engine: auto, epoll or io_uring. Wins on reload too.
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    engine: Option<EngineChoice>,
    /// Use FILE as the pidfile (the config's `pidfile`); with -s, find the server through it
    /// without reading the config.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Detach into the background (same as `daemon = true`).
    #[arg(long)]
    daemon: bool,
    /// Signal the running instance (found through the pidfile) and wait for the outcome:
    /// reload, stop or reopen.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    /// Print the version, the git revision, whether io_uring is usable here and what
    /// engine "auto" picks.
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
    };
    if let Some(what) = &cli.signal {
        return match daemon::send_signal(&opts, what) {
            Ok(said) => {
                eprintln!("tandem: {said}");
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
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    // What -t checks is what a start checks: the same function, before
    // anything is opened or bound.
    let checked = match daemon::preflight(&cfg, &origins, Stage::Start) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
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
    match daemon::run(opts, cfg, checked) {
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
