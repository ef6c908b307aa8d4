//! `hello_rss` on the system allocator, for comparison.

fn main() {
    let v: Vec<String> = (0..100).map(|i| format!("hello {i}")).collect();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    println!("system: {} strings; {hwm}", v.len());
}
