//! The `tandem` command: parse the command line, load the config, hand over
//! to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tandem::config::EngineChoice;
use tandem::daemon::{self, Options};
use tandem::log::Level;

/// A static-file HTTP/1.1 server daemon with epoll and io_uring engines.
#[derive(Parser, Debug)]
#[command(name = "tandem", version)]
struct Cli {
    /// Config file (TOML). Without it, built-in defaults: serve ./html on 127.0.0.1:8080.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config and exit: 0 if valid, 2 with the error otherwise.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Override the config's engine: auto, epoll or io_uring.
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    engine: Option<EngineChoice>,
    /// Detach into the background (same as `daemon = true`).
    #[arg(long)]
    daemon: bool,
    /// Signal the running instance (found through the pidfile): reload, stop or reopen.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
}

fn parse_engine(s: &str) -> Result<EngineChoice, String> {
    EngineChoice::parse(s).ok_or_else(|| format!("{s:?} is not one of auto, epoll, io_uring"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // Help, version or a usage error; if stdout/stderr cannot take
            // it, there is nowhere else to write, and the exit code still says it.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let opts = Options {
        config_path: cli.config.clone(),
        engine: cli.engine,
        daemon: cli.daemon,
    };
    let cfg = match opts.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.test {
        let name = cli
            .config
            .as_ref()
            .map_or("built-in defaults".to_string(), |p| p.display().to_string());
        eprintln!("tandem: configuration {name} is ok");
        return ExitCode::SUCCESS;
    }
    if let Some(what) = &cli.signal {
        return match daemon::send_signal(&cfg, what) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        };
    }
    let errors_on_stderr = cfg.error_log == tandem::log::LogTarget::Stderr;
    let level = Level::parse(&cfg.log_level).unwrap_or(Level::Info);
    if let Err(e) = tandem::log::init_error_log(&cfg.error_log, level) {
        eprintln!("tandem: error_log: {e}");
        return ExitCode::from(1);
    }
    match daemon::run(opts, cfg) {
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
