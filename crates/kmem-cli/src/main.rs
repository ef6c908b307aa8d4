//! The `kmem` command: boot a simulated machine, run kernel-like allocation work on it, and
//! look at the result through Linux's /proc views.

mod opts;
mod replay_cmd;
mod views;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Boot the default machine, run an allocation workload, print the /proc views.
    Demo {
        #[command(flatten)]
        machine: MachineOpts,
        /// Seconds of workload.
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
        /// Workload random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
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

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`kmem demo | head`), as C tools do, instead of panicking.
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo { machine, duration, seed } => workload::demo(&machine, duration, seed),
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
