//! A small byte mutator in the style of AFL's havoc stage: each mutation stacks one to six
//! edits (bit flips, interesting bytes, ASCII digit changes, deletions, insertions,
//! duplications, dictionary words, splices with another corpus input). Seeded, so a run is
//! reproducible from its seed.

use rand::rngs::SmallRng;
use rand::Rng;

const INTERESTING: &[u8] = b"\0\x01\x7f\x80\xff\n\r\t |=:[]-0123456789xX";

/// Mutates `data` in place, keeping it at most `max_len` bytes.
pub fn mutate(rng: &mut SmallRng, data: &mut Vec<u8>, dict: &[&[u8]], corpus: &[Vec<u8>], max_len: usize) {
    for _ in 0..rng.gen_range(1..=6) {
        let len = data.len();
        match rng.gen_range(0..10) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] = rng.gen();
            }
            3 if len > 0 => {
                // An ASCII digit (or any byte) nudged: numbers become off by one.
                let i = rng.gen_range(0..len);
                data[i] = data[i].wrapping_add(if rng.gen() { 1 } else { 255 });
            }
            4 if len > 1 => {
                let at = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - at).min(64));
                data.drain(at..at + n);
            }
            5 => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                data.splice(at..at, bytes);
            }
            6 if len > 0 => {
                let from = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - from).min(128));
                let chunk = data[from..from + n].to_vec();
                let at = rng.gen_range(0..=len);
                data.splice(at..at, chunk);
            }
            7 | 8 if !dict.is_empty() => {
                let word = dict[rng.gen_range(0..dict.len())];
                let at = rng.gen_range(0..=len);
                if rng.gen_bool(0.5) && at + word.len() <= len {
                    data[at..at + word.len()].copy_from_slice(word);
                } else {
                    data.splice(at..at, word.iter().copied());
                }
            }
            9 if !corpus.is_empty() => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let n = rng.gen_range(1..=other.len() - from);
                    let at = rng.gen_range(0..=len);
                    data.truncate(at.max(len / 2).min(len));
                    data.extend_from_slice(&other[from..from + n]);
                }
            }
            _ => data.push(rng.gen()),
        }
    }
    data.truncate(max_len);
}
