//! QR images of ticket codes, as a confirmation mail draws them: microseconds per PNG.
//!
//! `cargo bench -p integrations --bench qr`. `BENCH_CODES` changes the count (default 2,000),
//! `BENCH_CODE_LEN` the code's length (default 176, a signed ticket code's).

use std::time::Instant;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let count = env_count("BENCH_CODES", 2_000);
    let len = env_count("BENCH_CODE_LEN", 176);
    // Signed ticket codes are base32: upper-case letters and digits 2-7, alphanumeric mode.
    const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let codes: Vec<String> = (0..count)
        .map(|_| {
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(BASE32[(seed % 32) as usize])
                })
                .collect()
        })
        .collect();
    let mut bytes = 0;
    let started = Instant::now();
    for code in &codes {
        bytes += integrations::qr::png(code).expect("png").len();
    }
    let took = started.elapsed();
    println!(
        "qr png: {count} codes of {len} characters, {:.1} us per code, {} bytes per image",
        took.as_secs_f64() * 1e6 / count as f64,
        bytes / count.max(1)
    );
}
