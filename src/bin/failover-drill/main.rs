//! `failover-drill`: runs a failover drill against a throwaway local
//! PostgreSQL primary + standby, a Redis master + replicas (optionally
//! watched by three Sentinels), a `FailoverCache` over two independent
//! Redis servers, or a `FailoverClient` over local HTTP backends, and
//! reports what the application saw.
//!
//! ```text
//! failover-drill postgres --fault crash --promotion automatic --duration 20s \
//!     --json drill.json --svg drill.svg
//! failover-drill redis --fault restart-old --promotion sentinel --replicas 2 --ack 1
//! failover-drill cache --fault freeze --json cache.json --svg cache.svg
//! failover-drill http --backends 3 --fault crash --rate 400
//! ```
//!
//! Exit codes: 0 when the drill ran (even if a goal was missed: the report
//! says so), 1 when it could not run (no server binaries, a cluster that
//! does not start, an output file that cannot be written), 2 for invalid
//! arguments.

mod args;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use args::{Cli, Drill};
use clap::Parser;
use failover_pool::drill::cache::{
    CacheDrillReport, CacheProgress, run_cache_drill, write_cache_outputs,
};
use failover_pool::drill::http::{HttpDrillReport, run_http_drill, write_http_outputs};
use failover_pool::drill::report::Goal;
use failover_pool::drill::run::{DrillError, Phase, Progress, run_drill, write_outputs};

/// Prints progress to stderr: a `\r`-updated line on a terminal, a plain
/// line per second otherwise.
#[derive(Debug)]
struct ProgressPrinter {
    terminal: bool,
    last_second: Option<u64>,
    open_line: bool,
}

impl ProgressPrinter {
    fn new() -> Self {
        ProgressPrinter {
            terminal: std::io::stderr().is_terminal(),
            last_second: None,
            open_line: false,
        }
    }

    fn show(&mut self, p: &Progress) {
        let step = matches!(p.phase, Phase::Starting | Phase::Checking);
        self.line(step, p.elapsed, &p.line());
    }

    fn show_cache(&mut self, p: &CacheProgress) {
        self.line(!p.running, p.elapsed, &p.line());
    }

    /// A step on a line of its own, or the running drill's line (updated
    /// in place on a terminal, once a second otherwise).
    fn line(&mut self, step: bool, elapsed: Duration, line: &str) {
        let mut err = std::io::stderr().lock();
        if step {
            self.finish_line(&mut err);
            let _ = writeln!(err, "{line}");
        } else if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
            self.open_line = true;
        } else if self.last_second != Some(elapsed.as_secs()) {
            self.last_second = Some(elapsed.as_secs());
            let _ = writeln!(err, "{line}");
        }
    }

    fn finish_line(&mut self, err: &mut impl Write) {
        if self.open_line {
            let _ = writeln!(err);
            self.open_line = false;
        }
    }
}

/// An error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    failover_pool::error::chain(e).replace('\n', " | ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let drill = cli.command.drill();
    let checked = match &drill {
        Drill::Pool(name, opts) => opts.validate().map_err(|e| (*name, e)),
        Drill::Cache(opts, _) => opts.validate().map_err(|e| ("cache", e)),
        Drill::Http(opts, _) => opts.validate().map_err(|e| ("http", e)),
    };
    if let Err((subcommand, e)) = checked {
        eprintln!("failover-drill: {}", one_line(&e));
        eprintln!("Try 'failover-drill {subcommand} --help' for the options.");
        return ExitCode::from(2);
    }
    // A multi-threaded runtime, like the services the drill stands in for.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover-drill: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut printer = ProgressPrinter::new();
    match drill {
        Drill::Pool(_, opts) => {
            let result = runtime.block_on(run_drill(&opts, |p| printer.show(p)));
            printer.finish_line(&mut std::io::stderr());
            let report = match result {
                Ok(report) => report,
                Err(e) => return could_not_run(&e),
            };
            print!("{}", report.render_text());
            let written = write_outputs(&report, &opts);
            conclude(written, [&opts.json, &opts.svg], &report.goals)
        }
        Drill::Cache(opts, show) => {
            let drill = run_cache_drill(&opts, |p| {
                if show {
                    printer.show_cache(p);
                }
            });
            let result = runtime.block_on(drill);
            printer.finish_line(&mut std::io::stderr());
            let report: CacheDrillReport = match result {
                Ok(report) => report,
                Err(e) => return could_not_run(&e),
            };
            print!("{}", report.render_text());
            let written = write_cache_outputs(&report, &opts);
            conclude(written, [&opts.json, &opts.svg], &report.goals)
        }
        Drill::Http(opts, show) => {
            let drill = run_http_drill(&opts, |line| {
                if show {
                    eprintln!("{line}");
                }
            });
            let report: HttpDrillReport = match runtime.block_on(drill) {
                Ok(report) => report,
                Err(e) => return could_not_run(&e),
            };
            print!("{}", report.render_text());
            let written = write_http_outputs(&report, &opts);
            conclude(written, [&opts.json, &opts.svg], &report.goals)
        }
    }
}

/// Reports a drill that could not run; the exit code.
fn could_not_run(e: &DrillError) -> ExitCode {
    eprintln!("failover-drill: the drill could not run: {}", one_line(e));
    if matches!(e, DrillError::InvalidOptions(_)) {
        return ExitCode::from(2);
    }
    ExitCode::from(1)
}

/// Says where the outputs went and whether the goals were met; the exit
/// code (1 when an output could not be written).
fn conclude(
    written: Result<(), DrillError>,
    [json, svg]: [&Option<PathBuf>; 2],
    goals: &[Goal],
) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    if let Err(e) = written {
        eprintln!("failover-drill: {}", one_line(&e));
        code = ExitCode::from(1);
    } else {
        for (what, path) in [("JSON report", json), ("SVG chart", svg)] {
            if let Some(path) = path {
                println!("{what} written to {}", path.display());
            }
        }
    }
    let missed: Vec<String> = (goals.iter().filter(|g| !g.met))
        .map(|g| format!("{} (target {}, actual {})", g.name, g.target, g.actual))
        .collect();
    if missed.is_empty() {
        println!("\nRESULT: the drill ran and every goal was met");
    } else {
        println!(
            "\nRESULT: the drill ran, but {} goal(s) were MISSED: {}",
            missed.len(),
            missed.join("; ")
        );
    }
    code
}
