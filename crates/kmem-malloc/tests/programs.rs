//! Real programs under `LD_PRELOAD=libkmem_malloc.so`, each compared with the same run on
//! the system's malloc (same stdout, both exit 0): python3 with 4 threads, git, cc building
//! and running a program, and `sort` of a 20 MB file.
//!
//! The library is built as `tests/preload.rs` says (`tests/common`). A program that is not
//! installed fails its test (`.ci/run` installs them), unless `KMEM_SKIP_MISSING_TOOLS=1`:
//! then the test prints `SKIPPED: ...` and passes without running. Timings (with and without
//! kmem) are printed: `cargo test -p kmem-malloc --test programs -- --nocapture`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

mod common;
use common::{installed, same_output, scratch};

const PYTHON_SCRIPT: &str = r#"
import ctypes, hashlib, sys, threading

def work(k, out):
    h = hashlib.sha256()
    total = 0
    for r in range(4):
        d = {("key%d-%d" % (k, i)): [i] * (i % 7) for i in range(60000)}
        l = [str(i) * (1 + i % 5) for i in range(80000)]
        s = "-".join(l)
        big = "x" * (3 << 20) + str(r)          # mapped blocks
        l.sort()
        total += len(d) + sum(len(v) for v in d.values()) + len(s) + len(big)
        h.update(s[:10000].encode())
        h.update(l[r * 1000].encode())
        del d, l, s, big
        ba = bytearray(1 << 20)
        for j in range(0, len(ba), 4096):
            ba[j] = (j + k) % 256
        h.update(bytes(ba[::4096]))
        chunks = [bytes([r]) * (1 << (i % 20)) for i in range(200)]
        total += sum(map(len, chunks))
    out[k] = (total, h.hexdigest())

out = {}
ts = [threading.Thread(target=work, args=(k, out)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
for k in sorted(out):
    print(k, *out[k])
try:
    ctypes.CDLL(None).kmem_malloc_online_bytes
    print("allocator=kmem", file=sys.stderr)
except AttributeError:
    print("allocator=system", file=sys.stderr)
"#;

#[test]
fn python_threads_build_and_tear_down_large_objects() {
    if !installed("python_threads_build_and_tear_down_large_objects", "python3") {
        return;
    }
    let dir = scratch("python");
    let script = dir.join("work.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    let (_, km) = same_output("python3 (4 threads: dicts, lists, strings)", || {
        let mut c = Command::new("python3");
        c.arg(&script);
        c
    });
    assert!(String::from_utf8_lossy(&km.stderr).contains("allocator=kmem"), "python3 did not run on kmem");
    assert_eq!(String::from_utf8_lossy(&km.stdout).lines().count(), 4);
}

/// Writes a generated source tree into `dir`.
fn generate_repo(dir: &Path) {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for d in 0..12 {
        let sub = dir.join(format!("dir{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..25 {
            let mut s = String::new();
            for l in 0..(20 + next() % 200) {
                s.push_str(&format!("line {l} of file {f} in dir {d}: {:016x}\n", next()));
            }
            std::fs::write(sub.join(format!("file{f:02}.txt")), s).unwrap();
        }
    }
    let blob: Vec<u8> = (0..(3 << 20)).map(|_| (next() >> 56) as u8).collect();
    std::fs::write(dir.join("blob.bin"), blob).unwrap();
}

#[test]
fn git_init_add_commit_log() {
    if !installed("git_init_add_commit_log", "git") {
        return;
    }
    let base = scratch("git");
    let n = std::sync::atomic::AtomicUsize::new(0);
    same_output("git (init, add, commit x2, log, fsck)", || {
        let repo = base.join(format!("repo{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::create_dir_all(&repo).unwrap();
        generate_repo(&repo);
        let script = "set -e
git init -q -b main .
git add -A
git commit -q -m 'generated tree'
echo change >> dir03/file07.txt
git rm -q dir05/file11.txt
git commit -q -a -m 'second commit'
git log --stat --format='%H %an <%ae> %ad %s'
git fsck --no-progress 2>&1
git gc -q
git count-objects -v | grep -v size
git log --format=%H | head -1";
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).current_dir(&repo);
        c.env("HOME", &repo).env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null");
        for who in ["AUTHOR", "COMMITTER"] {
            c.env(format!("GIT_{who}_NAME"), "kmem test")
                .env(format!("GIT_{who}_EMAIL"), "kmem@example.invalid")
                .env(format!("GIT_{who}_DATE"), "2026-01-02T03:04:05 +0000");
        }
        c.env("TZ", "UTC").env("LC_ALL", "C");
        c
    });
}

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; char *name; };

int main(void) {
    struct node *head = NULL;
    for (int i = 0; i < 20000; i++) {
        struct node *n = malloc(sizeof *n);
        n->name = malloc(32);
        snprintf(n->name, 32, "node-%d", i);
        n->next = head;
        head = n;
    }
    unsigned long h = 5381;
    size_t count = 0;
    while (head) {
        for (char *p = head->name; *p; p++) h = h * 33 + (unsigned char)*p;
        struct node *n = head->next;
        free(head->name);
        free(head);
        head = n;
        count++;
    }
    char *buf = NULL;
    for (size_t n = 1; n <= (8u << 20); n *= 2) {
        buf = realloc(buf, n);
        memset(buf, (int)(n % 251), n);
    }
    printf("nodes %zu hash %lu last %d\n", count, h, buf[(8u << 20) - 1]);
    free(buf);
    return 0;
}
"#;

#[test]
fn cc_builds_and_runs_a_program() {
    if !installed("cc_builds_and_runs_a_program", "cc") {
        return;
    }
    let base = scratch("cc");
    std::fs::write(base.join("prog.c"), C_PROGRAM).unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    // The compiler (driver, cc1, as, ld) and then the program it built, both under the
    // same allocator.
    same_output("cc -O2 prog.c && ./prog", || {
        let exe = format!("prog{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("set -e; cc -O2 -Wall -o {exe} prog.c; ./{exe}")).current_dir(&base);
        c
    });
}

#[test]
fn sort_a_20_mb_file() {
    if !installed("sort_a_20_mb_file", "sort") {
        return;
    }
    let dir = scratch("sort");
    let input = dir.join("input.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut written = 0usize;
        while written < 20 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!("{:x} {} {}\n", x, x % 100_000, "abcdefghij".repeat((x % 5) as usize));
            written += line.len();
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let (_, km) = same_output("sort (20 MB, 2 threads)", || {
        let mut c = Command::new("sort");
        c.args(["--parallel=2", "-k2,2n", "-k1,1"]).arg(&input).env("LC_ALL", "C");
        c
    });
    assert!(km.stdout.len() >= 20 << 20);
}
