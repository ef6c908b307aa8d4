use super::*;

#[test]
fn slots_are_reused_and_live_keys_keep_theirs() {
    let mut m = SlotMap::new();
    assert_eq!(m.alloc(0xa), (0, false));
    assert_eq!(m.alloc(0xb), (1, false));
    assert_eq!(m.alloc(0xa), (0, true));
    assert_eq!(m.free(0xa), 0);
    assert_eq!(m.free(0xa), NO_SLOT);
    assert_eq!(m.alloc(0xc), (0, false));
    assert_eq!((m.live(), m.slots()), (2, 2));
}

/// The map as it was: a `HashMap` and the same free list.
#[derive(Default)]
struct Model {
    map: HashMap<u64, u32>,
    free: Vec<u32>,
    next: u32,
}

impl Model {
    fn alloc(&mut self, key: u64) -> (u32, bool) {
        if let Some(&s) = self.map.get(&key) {
            return (s, true);
        }
        let s = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.map.insert(key, s);
        (s, false)
    }
    fn free(&mut self, key: u64) -> u32 {
        self.map.remove(&key).inspect(|&s| self.free.push(s)).unwrap_or(NO_SLOT)
    }
}

#[test]
fn matches_a_hash_map_through_growth_and_deletion() {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Keys shaped like the trace's (hashed pointers, runs of pfns) and colliding ones (equal
    // top bits after the multiply: multiples of a large power of two).
    for (round, keyspace) in [(0, 50_000u64), (1, 300), (2, 0)] {
        let (mut m, mut model) = (SlotMap::new(), Model::default());
        for step in 0..400_000u64 {
            let k = match round {
                0 => next() % keyspace,
                1 => 0x11_0000 + next() % keyspace,
                _ => (next() % 64) << 40,
            };
            // Grow to about 30,000 live keys, then shrink.
            let alloc = next() % 100 < if step < 200_000 { 70 } else { 30 };
            if alloc {
                assert_eq!(m.alloc(k), model.alloc(k), "round {round} step {step} alloc {k:#x}");
            } else {
                assert_eq!(m.free(k), model.free(k), "round {round} step {step} free {k:#x}");
            }
            assert_eq!(m.live(), model.map.len());
        }
        assert_eq!(m.slots(), model.next);
        for (&k, &s) in &model.map {
            assert_eq!(m.alloc(k), (s, true));
        }
    }
}

#[test]
fn text_memo_makes_each_value_once() {
    let mut t = TextMemo::new();
    let mut made = 0;
    let texts: Vec<String> = (0..1000).map(|i| format!("GFP_KERNEL|__GFP_{i}")).collect();
    for _ in 0..3 {
        for (i, s) in texts.iter().enumerate() {
            assert_eq!(
                t.get(s.as_bytes(), || {
                    made += 1;
                    i
                }),
                i
            );
        }
    }
    assert_eq!((made, t.len()), (1000, 1000));
    let pairs = [
        ("", "x"),
        ("a", "a\0"),
        ("abcdefgh", "abcdefgi"),
        ("12345678abcdefgh", "12345678xbcdefgh"),
        ("0123456789ABCDEFGHIJ", "0123456789xBCDEFGHIJ"), // only the middle differs
        ("01234567_ABCDEFGHI_01234567", "01234567_ABCDEFGHx_01234567"),
        ("01234567x01234567", "01234567y01234567"),
    ];
    for (a, b) in pairs {
        let (va, vb) = (t.get(a.as_bytes(), || 1), t.get(b.as_bytes(), || 2));
        assert_eq!((va, vb, t.get(a.as_bytes(), || 3)), (1, 2, 1), "{a} {b}");
    }
    assert_eq!(t.peek(b"abcdefgh"), Some(1));
    // Every single-byte difference, at every length up to 40.
    for n in 0..40 {
        let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
        let mut t = TextMemo::new();
        assert_eq!(t.get(&a, || 0), 0);
        for k in 0..n {
            let mut b = a.clone();
            b[k] = b'#';
            assert_eq!(t.get(&b, || k + 1), k + 1, "length {n}, byte {k}");
            assert_eq!(t.get(&a, || 99), 0);
        }
    }
    assert_eq!(t.peek(b"nope"), None);
}
