//! Machine options shared by the subcommands.

use clap::Args;
use kmem_hosted::{Machine, MachineBuilder, Preset};

/// How to build the machine.
#[derive(Args, Debug, Clone)]
pub struct MachineOpts {
    /// RAM size, e.g. 4G, 512M.
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    pub ram: u64,
    /// Number of CPUs (1..=256).
    #[arg(long, default_value_t = 4)]
    pub cpus: usize,
    /// Number of NUMA nodes (1..=64). The RAM is split between them by 128 MiB sections, so
    /// each needs at least one section of usable RAM.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Architecture preset: x86-64, or x86-32 (with HighMem).
    #[arg(long, default_value = "x86-64")]
    pub preset: Preset,
    /// Boot with KFENCE sampling every MS milliseconds (`kfence.sample_interval=`; 0: the pool
    /// is built but KFENCE is disabled). The kfence views boot it at 100 ms when not given.
    #[arg(long, value_name = "MS")]
    pub kfence_sample_interval: Option<u64>,
}

impl MachineOpts {
    /// Boots the machine.
    pub fn build(&self) -> Result<Machine, String> {
        self.builder().build().map_err(|e| e.to_string())
    }

    /// The builder [`MachineOpts::build`] uses, for subcommands that add options. Quiet: the
    /// subcommands print the reports they mean to show themselves.
    pub fn builder(&self) -> MachineBuilder {
        let b = MachineBuilder::new()
            .ram_bytes(self.ram)
            .cpus(self.cpus)
            .nodes(self.nodes)
            .preset(self.preset)
            .quiet_reports();
        match self.kfence_sample_interval {
            Some(ms) => b.kfence(kmem::kfence::KfenceConfig { sample_interval_ms: ms, ..Default::default() }),
            None => b,
        }
    }
}

/// Parses `1T`, `4G`, `512M`, `65536K` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'T' | 't')) => (&s[..i], 1u64 << 40),
        Some((i, 'G' | 'g')) => (&s[..i], 1u64 << 30),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'K' | 'k')) => (&s[..i], 1 << 10),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size '{s}' (use e.g. 4G, 512M)"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("size '{s}' is too large"))?;
    if !(2 << 20..=1 << 44).contains(&bytes) {
        return Err(format!("size '{s}' out of range (2M..16T)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("17T").is_err());
        assert!(parse_size("1K").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
