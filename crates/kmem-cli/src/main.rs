//! The `kmem` command: boot a simulated machine, run kernel-like allocation work on it, and
//! look at the result through Linux's /proc views and a page-frame map.

mod demo;
mod highmem_phase;
mod opts;
mod pfmap;
mod phases;
mod pressure;
mod pressure_png;
mod replay_cmd;
mod views;
mod workload;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use crate::opts::MachineOpts;
use crate::views::View;

/// kmem: the Linux kernel's memory allocators, running in this process.
#[derive(Parser, Debug)]
#[command(name = "kmem", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot a machine, run the allocation workload phases, print the /proc views and write a
    /// page-frame map (PNG and SVG).
    Demo(demo::DemoArgs),
    /// Boot a machine, run the demo workload briefly, and print one /proc view.
    Proc {
        /// Which view.
        #[arg(value_enum)]
        view: View,
        #[command(flatten)]
        machine: MachineOpts,
        /// Seconds of workload before printing (0: a freshly booted machine).
        #[arg(long, default_value_t = 0.5)]
        duration: f64,
        /// Workload random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Replay a Linux kmem ftrace capture (plain or zstd) against a machine and report.
    Replay(replay_cmd::ReplayArgs),
}

/// Parses the command line. Help and version go to stdout as usual; a usage error becomes
/// one `kmem: error: ...` line on stderr, pointing at the subcommand's help, and exit status 2.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("{}", usage_error(&e, std::env::args().skip(1)));
            Err(ExitCode::from(2))
        }
    }
}

/// The one line of a usage error: clap's first line, the missing arguments it lists below it
/// (with their accepted values), clap's list of accepted values, and the help to read.
fn usage_error(e: &clap::Error, args: impl Iterator<Item = String>) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments").trim_end_matches(':');
    let cmd = Cli::command();
    // The subcommand the arguments name, if any: its help is the one to read.
    let sub = args.into_iter().find_map(|a| cmd.find_subcommand(&a).map(|c| c.get_name().to_owned()));
    let mut out = format!("kmem: {first}");
    if e.kind() == ErrorKind::MissingRequiredArgument {
        // clap lists them indented on the following lines (`  <VIEW>`).
        let missing: Vec<&str> = lines.clone().map(str::trim).take_while(|l| !l.is_empty()).collect();
        out.push_str(&format!(": {}", missing.join(" ")));
        let sub_cmd = sub.as_deref().and_then(|n| cmd.find_subcommand(n));
        for arg in sub_cmd.iter().flat_map(|c| c.get_positionals()) {
            let name = format!("<{}>", arg.get_id().as_str().to_uppercase());
            let values: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect();
            if missing.contains(&name.as_str()) && !values.is_empty() {
                out.push_str(&format!(" [possible values: {}]", values.join(", ")));
            }
        }
    } else if let Some(v) = lines.map(str::trim).find(|l| l.starts_with("[possible values:")) {
        // Keep clap's list of accepted values on the same line.
        out.push_str(&format!(" {v}"));
    }
    match sub {
        Some(s) => out.push_str(&format!(" (see kmem {s} --help)")),
        None => out.push_str(" (see kmem --help)"),
    }
    out
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`kmem demo | head`), as C tools do, instead of panicking.
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let r = match cli.cmd {
        Cmd::Demo(args) => demo::demo(&args),
        Cmd::Proc { view, machine, duration, seed } => views::proc_cmd(view, &machine, duration, seed),
        Cmd::Replay(a) => replay_cmd::run(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmem: error: {e}");
            ExitCode::FAILURE
        }
    }
}
