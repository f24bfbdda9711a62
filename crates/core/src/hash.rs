//! Two non-cryptographic 64-bit hashes. FNV-1a (Fowler, Noll and Vo; the 64-bit offset basis and prime from
//! draft-eastlake-fnv) for short text and ids that must stay the same across versions. XXH64, written from its
//! specification (Yann Collet, "xxHash fast digest algorithm", version 0.1.1: github.com/Cyan4973/xxHash,
//! `doc/xxhash_spec.md`), for whole request bodies: it reads eight bytes a step in four independent lanes, where
//! FNV-1a multiplies once per byte in one chain, and agents send bodies of hundreds of kilobytes.

/// FNV-1a over `parts`, one after the other.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, lane_acc: u64) -> u64 {
    (acc ^ round(0, lane_acc)).wrapping_mul(P1).wrapping_add(P4)
}

fn u64_at(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(w))
}

/// The XXH64 hash of `data` with `seed`.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let mut rest = data;
    let mut acc = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        let mut stripes = rest.chunks_exact(32);
        for stripe in &mut stripes {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, u64_at(&stripe[i * 8..]));
            }
        }
        rest = stripes.remainder();
        let acc = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        v.iter().fold(acc, |acc, lane| merge(acc, *lane))
    } else {
        seed.wrapping_add(P5)
    };
    acc = acc.wrapping_add(data.len() as u64);
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        acc = (acc ^ round(0, u64_at(w)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
    }
    rest = words.remainder();
    if rest.len() >= 4 {
        acc = (acc ^ u32_at(rest).wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest = &rest[4..];
    }
    for b in rest {
        acc = (acc ^ u64::from(*b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    acc ^= acc >> 33;
    acc = acc.wrapping_mul(P2);
    acc ^= acc >> 29;
    acc = acc.wrapping_mul(P3);
    acc ^ (acc >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a's published 64-bit test vectors, whole and split into parts.
    #[test]
    fn fnv1a_matches_its_test_vectors() {
        assert_eq!(fnv1a(&[b"".as_slice()]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a".as_slice()]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar".as_slice()]), 0x8594_4171_f739_67e8);
        assert_eq!(
            fnv1a(&[b"foo".as_slice(), b"", b"bar"]),
            0x8594_4171_f739_67e8
        );
    }

    /// Values from the reference implementation's Python binding (`xxhash` 3 on PyPI, `xxh64(data, seed)`), for
    /// every path through the function: empty, the byte tail, the 4-byte step, 8-byte words, whole stripes of
    /// 32 and what follows them.
    #[test]
    fn agrees_with_the_reference_implementation() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| u8::try_from((i * 31 + 7) % 251).unwrap())
            .collect();
        let cases: [(usize, u64, u64); 16] = [
            (0, 0, 0xef46db3751d8e999),
            (0, 0x9e3779b97f4a7c15, 0xc4349fc93c010000),
            (1, 0, 0xa96c7f0ce858bbb7),
            (3, 0, 0x56e6957632a487f9),
            (4, 0, 0xc60d15b1e3ff8f04),
            (7, 0x9e3779b97f4a7c15, 0x2ce9adec2b2c8104),
            (8, 0, 0x3da5c7aa269683e0),
            (15, 0, 0xdee89d8a065a6233),
            (31, 0x9e3779b97f4a7c15, 0xf51c93235f2511cb),
            (32, 0, 0x40b7aff75d45bbc8),
            (33, 0, 0x4997cae4951c17a5),
            (63, 0, 0x2944b4dafc69b206),
            (64, 0x9e3779b97f4a7c15, 0x51dc1183ebcfbe79),
            (100, 0, 0xf0b29a915621716d),
            (1000, 0, 0x9e3300c1cde3c58d),
            (1000, 0x9e3779b97f4a7c15, 0x923a32ec0386c267),
        ];
        for (len, seed, want) in cases {
            assert_eq!(
                xxh64(&data[..len], seed),
                want,
                "{len} bytes, seed {seed:#x}"
            );
        }
    }
}
