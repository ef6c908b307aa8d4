//! `kmem-fuzz`: run the fuzz targets of this crate (see the crate docs).
//!
//! ```text
//! kmem-fuzz run <target|all> [--iters N] [--secs S] [--seed N]
//! kmem-fuzz exec <target> [FILE]     (standard input without FILE; aborts on a failure: AFL)
//! kmem-fuzz minimize <target> FILE   (writes FILE.min: the smallest input failing the same way)
//! kmem-fuzz list
//! ```

use std::io::Read;
use std::process::ExitCode;

use kmem_fuzz::driver::{self, Budget};
use kmem_fuzz::{target, TARGETS};

fn usage() -> ExitCode {
    eprintln!("usage: kmem-fuzz run <target|all> [--iters N] [--secs S] [--seed N]\n       kmem-fuzz exec <target> [FILE]\n       kmem-fuzz minimize <target> FILE\n       kmem-fuzz list");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in TARGETS {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        Some("exec") => {
            let Some(t) = args.get(1).and_then(|n| target(n)) else { return usage() };
            let mut data = Vec::new();
            let read = match args.get(2) {
                Some(f) => std::fs::read(f).map(|d| data = d),
                None => std::io::stdin().read_to_end(&mut data).map(drop),
            };
            if let Err(e) = read {
                eprintln!("kmem-fuzz: {e}");
                return ExitCode::from(2);
            }
            // A failed property must look like a crash to AFL: abort after the message.
            std::panic::set_hook(Box::new(|info| {
                eprintln!("{info}");
                std::process::abort();
            }));
            (t.run)(&data);
            ExitCode::SUCCESS
        }
        Some("minimize") => {
            let (Some(t), Some(f)) = (args.get(1).and_then(|n| target(n)), args.get(2)) else { return usage() };
            let data = match std::fs::read(f) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("kmem-fuzz: {f}: {e}");
                    return ExitCode::from(2);
                }
            };
            std::panic::set_hook(Box::new(|_| {}));
            let Some((min, msg)) = driver::minimize(t, &data) else {
                eprintln!("kmem-fuzz: {f} does not fail");
                return ExitCode::FAILURE;
            };
            let out = format!("{f}.min");
            if let Err(e) = std::fs::write(&out, &min) {
                eprintln!("kmem-fuzz: {out}: {e}");
                return ExitCode::from(2);
            }
            println!("{} -> {} bytes: {out}\n{msg}\nbytes: {min:?}", data.len(), min.len());
            ExitCode::SUCCESS
        }
        Some("run") => {
            let mut budget = Budget::from_env(u64::MAX, 60.0);
            let mut i = 2;
            while i + 1 < args.len() + 1 && i < args.len() {
                let v = args.get(i + 1).and_then(|v| v.parse::<f64>().ok());
                match (args[i].as_str(), v) {
                    ("--iters", Some(v)) => budget.iters = v as u64,
                    ("--secs", Some(v)) => budget.time = std::time::Duration::from_secs_f64(v),
                    ("--seed", Some(v)) => budget.seed = v as u64,
                    _ => return usage(),
                }
                i += 2;
            }
            let which: Vec<_> = match args.get(1).map(String::as_str) {
                Some("all") => TARGETS.iter().collect(),
                Some(n) => match target(n) {
                    Some(t) => vec![t],
                    None => return usage(),
                },
                None => return usage(),
            };
            for t in which {
                match driver::run(t, budget) {
                    Ok(o) => println!(
                        "{}: {} corpus inputs, {} mutations in {:.1?}: no failure",
                        t.name, o.corpus, o.mutations, o.elapsed
                    ),
                    Err(c) => {
                        eprintln!("{c}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}
