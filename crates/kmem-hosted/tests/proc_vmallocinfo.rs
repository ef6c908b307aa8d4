//! `/proc/vmallocinfo` on a hosted machine: every line has the shape of Linux 6.18's (the
//! capture in `fixtures/linux-6.18-proc/vmallocinfo.txt` passes the same checker).

use kmem::{Gfp, Order, ReportKind};
use kmem_hosted::MachineBuilder;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/linux-6.18-proc/");

fn sample(name: &str) -> String {
    let path = format!("{SAMPLES}{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading the 6.18 capture {path}: {e}"))
}

/// The shape of a `/proc/vmallocinfo` line: `0x<16 hex>-0x<16 hex> <size, %7ld>`, then an
/// optional caller, `pages=N`, `phys=...`, the flag words, `N<node>=n` counts, in Linux's order;
/// or the `vm_map_ram` / `unpurged vm_area` forms. Returns why a line does not fit.
fn vmallocinfo_shape(l: &str) -> Result<(), String> {
    let hex16 = |s: &str| s.len() == 18 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if l.len() < 45 || !hex16(&l[..18]) || &l[18..19] != "-" || !hex16(&l[19..37]) || &l[37..38] != " " {
        return Err("range".into());
    }
    let size = &l[38..45];
    if !size.trim_start().bytes().all(|b| b.is_ascii_digit()) || size.trim_start().is_empty() {
        return Err("size field".into());
    }
    let rest = &l[45..];
    if rest == " vm_map_ram" || rest == " unpurged vm_area" {
        return Ok(());
    }
    let words: Vec<&str> = rest.split(' ').skip(1).collect();
    let flags = ["ioremap", "vmalloc", "vmap", "user", "dma-coherent", "vpages"];
    // Stages: caller, pages=, phys=, flags (in order), node counts.
    let mut stage = -1i32;
    for (i, w) in words.iter().enumerate() {
        let st = if let Some(n) = w.strip_prefix("pages=") {
            n.parse::<u64>().map_err(|_| format!("pages {w}"))?;
            1
        } else if w.starts_with("phys=") {
            2
        } else if let Some(f) = flags.iter().position(|f| f == w) {
            3 + f as i32
        } else if w.starts_with('N')
            && w[1..].split_once('=').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
        {
            10
        } else if i == 0 {
            0
        } else {
            return Err(format!("unexpected word {w:?}"));
        };
        if st < stage || (st == stage && st != 10) {
            return Err(format!("{w:?} out of order"));
        }
        stage = st;
    }
    Ok(())
}

#[test]
fn vmallocinfo_lines_have_linux_shape() {
    for l in sample("vmallocinfo.txt").lines() {
        vmallocinfo_shape(l).unwrap_or_else(|e| panic!("the checker rejects Linux's own line ({e}): {l}"));
    }
    let m = MachineBuilder::new().ram_mib(256).cpus(2).nodes(2).build().unwrap();
    let a = m.vmalloc(5 * 4096).unwrap();
    let u = m.vmalloc_user(4096).unwrap();
    let big = m.vmalloc(700 * 4096).unwrap();
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let v = m.vmap(&[p], kmem::PageProt::KERNEL).unwrap();
    let r = m.vm_map_ram(&[p]).unwrap();
    let lazy = m.vmalloc(9 * 4096).unwrap();
    // SAFETY: ours; goes to the lazy list.
    unsafe { m.vfree(lazy.as_ptr()) };
    let mut s = String::new();
    kmem::proc::vmallocinfo(&m, &mut s).unwrap();
    for l in s.lines() {
        vmallocinfo_shape(l).unwrap_or_else(|e| panic!("{e}: {l}\n{s}"));
    }
    for want in [" vmalloc N", " vmalloc user N", " vmalloc vpages N", " vmap", " vm_map_ram", " unpurged vm_area"] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
    // SAFETY: ours.
    unsafe {
        m.vfree(a.as_ptr());
        m.vfree(u.as_ptr());
        m.vfree(big.as_ptr());
        m.vunmap(v.as_ptr());
        m.vm_unmap_ram(r.as_ptr(), 1);
        m.__free_pages(p, Order::ZERO);
    }
    assert_eq!(m.report_count(ReportKind::Warning), 0);
}
