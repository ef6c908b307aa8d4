//! What kmem costs a small program: a few allocations on kmem, then the peak RSS (`VmHWM`).
//! `hello_rss_system` is the same program on the system allocator.

#[global_allocator]
static A: kmem_alloc::KmemAlloc = kmem_alloc::KmemAlloc;

fn main() {
    let v: Vec<String> = (0..100).map(|i| format!("hello {i}")).collect();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    println!("kmem: {} strings; {hwm}", v.len());
}
