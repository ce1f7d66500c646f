//! QR images of ticket codes: SVG and PNG (one bit per pixel, drawn from the module matrix,
//! so the heavy `image` crate is not needed; fast deflate: a QR PNG was most of a mail's
//! CPU cost when it was 8-bit greyscale at the default compression). Error correction level M (15% of the code may be
//! damaged), a quiet zone of 4 modules, codes in alphanumeric mode.

use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in PNGs.
const PNG_SCALE: usize = 8;
/// Light modules around the code (the standard's minimum).
const QUIET_ZONE: usize = 4;

fn qr(code: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).map_err(|e| e.to_string())
}

/// The mask patterns in the standard's order (of equal scores, the first wins).
const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// The modules of `code`'s QR code, row by row (`true`: dark), and its width in modules:
/// exactly what `QrCode::with_error_correction_level` draws (same version, codewords and
/// mask), but the mask is chosen by our own [`penalty_flat`]. The crate's scoring boxes a closure
/// per module and direction: on a mail's send it was over half the CPU.
fn modules(code: &str) -> Result<(Vec<bool>, usize), String> {
    let bits = qrcode::bits::encode_auto(code.as_bytes(), EcLevel::M).map_err(|e| e.to_string())?;
    let version = bits.version();
    let (data, ec) = qrcode::ec::construct_codewords(&bits.into_bytes(), version, EcLevel::M)
        .map_err(|e| e.to_string())?;
    let mut canvas = Canvas::new(version, EcLevel::M);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let width = usize::try_from(version.width()).map_err(|e| e.to_string())?;
    if width <= packed::WIDTH_MAX {
        return Ok((packed::best(canvas, width), width));
    }
    let mut best: Option<(u32, Vec<bool>)> = None;
    for mask in MASKS {
        let mut masked = canvas.clone();
        masked.apply_mask(mask);
        let dark: Vec<bool> = masked
            .into_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        let score = penalty_flat(&dark, width);
        if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
            best = Some((score, dark));
        }
    }
    let (_, dark) = best.ok_or("no mask")?;
    Ok((dark, width))
}

/// The mask choice with a row (and a column) per 64-bit word, bit `x` for module `x`: a
/// ticket's code (version 10 at most, 57 modules) fits. Each rule is a few shifts per line
/// instead of a step per module, and masking is linear: a code under a mask is its unmasked
/// modules XOR what that mask flips (the data modules it inverts, and the format information
/// written for it), the same for every code of a version, so it is computed once per
/// version (with the crate) and kept. The flat scoring of 8 masks, each applied by the crate,
/// was most of a QR image's cost.
mod packed {
    use super::MASKS;
    use qrcode::Color;
    use qrcode::canvas::Canvas;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    /// Widest code scored here: the finder rule looks 4 modules past each end of a line.
    pub(super) const WIDTH_MAX: usize = 60;

    /// Lines of a code: its rows and its columns.
    #[derive(Clone)]
    struct Lines {
        rows: Vec<u64>,
        columns: Vec<u64>,
    }

    impl Lines {
        fn of(canvas: Canvas, width: usize) -> Self {
            let colors = canvas.into_colors();
            let rows: Vec<u64> = colors
                .chunks_exact(width)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold(0, |bits, (x, c)| bits | (u64::from(*c == Color::Dark) << x))
                })
                .collect();
            let mut columns = vec![0u64; width];
            for (y, row) in rows.iter().enumerate() {
                for (x, column) in columns.iter_mut().enumerate() {
                    *column |= ((row >> x) & 1) << y;
                }
            }
            Self { rows, columns }
        }

        fn xor(&self, other: &Self) -> Self {
            let xor = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(a, b)| a ^ b).collect();
            Self {
                rows: xor(&self.rows, &other.rows),
                columns: xor(&self.columns, &other.columns),
            }
        }
    }

    /// What each mask flips, per width (one per QR version: 40 entries at most).
    /// (Any code of the version serves: `unmasked` is only read on the first one.)
    fn flips(unmasked: &Canvas, width: usize) -> Arc<[Lines; 8]> {
        static FLIPS: OnceLock<Mutex<HashMap<usize, Arc<[Lines; 8]>>>> = OnceLock::new();
        let cache = FLIPS.get_or_init(Default::default);
        if let Some(flips) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&width) {
            return flips.clone();
        }
        let plain = &Lines::of(unmasked.clone(), width);
        let flips = Arc::new(MASKS.map(|mask| {
            let mut masked = unmasked.clone();
            masked.apply_mask(mask);
            Lines::of(masked, width).xor(plain)
        }));
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(width, flips.clone());
        flips
    }

    /// The modules under the mask of lowest penalty (of equal ones, the first).
    pub(super) fn best(unmasked: Canvas, width: usize) -> Vec<bool> {
        let flips = flips(&unmasked, width);
        let plain = Lines::of(unmasked, width);
        let mut best: Option<(u32, Lines)> = None;
        for flip in flips.iter() {
            let masked = plain.xor(flip);
            let score = penalty(&masked.rows, &masked.columns, width);
            if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
                best = Some((score, masked));
            }
        }
        let rows = best.map(|(_, lines)| lines.rows).unwrap_or(plain.rows);
        rows.iter()
            .flat_map(|row| (0..width).map(move |x| (row >> x) & 1 == 1))
            .collect()
    }

    /// [`super::penalty_flat`] of the code with these rows and columns.
    pub(super) fn penalty(rows: &[u64], columns: &[u64], width: usize) -> u32 {
        let all = (1u64 << width) - 1;
        let mut score = 0;
        for line in rows.iter().chain(columns) {
            score += runs(*line, width) + 40 * finder_like(*line, all).count_ones();
        }
        for pair in rows.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // Module x alike its right neighbour in both rows, and the rows alike at x.
            let blocks = !(a ^ (a >> 1)) & !(b ^ (b >> 1)) & !(a ^ b) & (all >> 1);
            score += 3 * blocks.count_ones();
        }
        let dark_count: u32 = rows.iter().map(|r| r.count_ones()).sum();
        let ratio = dark_count as usize * 200 / (width * width);
        score + u32::try_from(ratio.abs_diff(100)).unwrap_or(u32::MAX)
    }

    /// 3 + n for each run of 5 + n alike modules: runs end where a module differs from the
    /// next.
    fn runs(line: u64, width: usize) -> u32 {
        let mut ends = (line ^ (line >> 1)) & ((1u64 << (width - 1)) - 1);
        let mut score = 0;
        let mut start = 0u32;
        while ends != 0 {
            let end = ends.trailing_zeros();
            let run = end + 1 - start;
            if run >= 5 {
                score += run - 2;
            }
            start = end + 1;
            ends &= ends - 1;
        }
        let run = width as u32 - start;
        if run >= 5 {
            score += run - 2;
        }
        score
    }

    /// Bit `j` set for each `#.###.#` starting at `j` with four light modules before it or
    /// four after it (outside the code counts as light).
    fn finder_like(line: u64, all: u64) -> u64 {
        const PATTERN: [bool; 7] = [true, false, true, true, true, false, true];
        let mut at = all >> 6; // where 7 modules fit
        for (k, dark) in PATTERN.iter().enumerate() {
            at &= if *dark { line >> k } else { !(line >> k) };
        }
        // Light, with everything beyond the code light; `before` has 4 light modules shifted
        // in below module 0, so its bits j..j+3 are modules j-4..j-1.
        let light = !line | !all;
        let before = (light << 4) | 0b1111;
        let four = |bits: u64| bits & (bits >> 1) & (bits >> 2) & (bits >> 3);
        at & (four(before) | (four(light) >> 7))
    }
}

/// The standard's mask penalty (ISO/IEC 18004 §7.8.3) as the `qrcode` crate counts it: runs
/// of 5 + n alike in a row or column (3 + n each), 2×2 blocks alike (3 each), finder-like
/// `#.###.#` runs with four light modules on a side (40 each; the crate's constant offset for
/// the real finder patterns left out, it is the same for every mask), and the dark share's
/// distance from half.
///
/// Module by module, for codes too wide for [`packed`].
fn penalty_flat(dark: &[bool], width: usize) -> u32 {
    let mut columns = vec![false; dark.len()];
    for (y, row) in dark.chunks_exact(width).enumerate() {
        for (x, module) in row.iter().enumerate() {
            columns[x * width + y] = *module;
        }
    }
    let mut score = 0u32;
    for grid in [dark, &columns] {
        for line in grid.chunks_exact(width) {
            score += runs(line) + finder_like(line);
        }
    }
    for (row, next) in dark
        .chunks_exact(width)
        .zip(dark.chunks_exact(width).skip(1))
    {
        for x in 0..width - 1 {
            let c = row[x];
            if c == row[x + 1] && c == next[x] && c == next[x + 1] {
                score += 3;
            }
        }
    }
    let dark_count = dark.iter().filter(|d| **d).count();
    let ratio = dark_count * 200 / dark.len();
    score + u32::try_from(ratio.abs_diff(100)).unwrap_or(u32::MAX)
}

/// 3 + n for each run of 5 + n alike modules in `line`.
fn runs(line: &[bool]) -> u32 {
    let mut score = 0;
    let mut run = 1u32;
    for pair in line.windows(2) {
        if pair[0] == pair[1] {
            run += 1;
            continue;
        }
        if run >= 5 {
            score += run - 2;
        }
        run = 1;
    }
    if run >= 5 {
        score += run - 2;
    }
    score
}

/// 40 for each `#.###.#` in `line` with no dark module among the four before it or among
/// the four after it (outside the code counts as light).
fn finder_like(line: &[bool]) -> u32 {
    const PATTERN: [bool; 7] = [true, false, true, true, true, false, true];
    let mut score = 0;
    for (j, window) in line.windows(7).enumerate() {
        if window != PATTERN {
            continue;
        }
        let before = line[j.saturating_sub(4)..j].iter().any(|d| *d);
        let after = line[j + 7..(j + 11).min(line.len())].iter().any(|d| *d);
        if !before || !after {
            score += 40;
        }
    }
    score
}

/// The QR code of `code` as an SVG document.
pub fn svg(code: &str) -> Result<String, String> {
    Ok(qr(code)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// The QR code of `code` as a PNG image.
pub fn png(code: &str) -> Result<Vec<u8>, String> {
    let (colors, modules) = modules(code)?;
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    // One bit per pixel, most significant first: 1 is light, 0 dark.
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0xffu8; row_bytes * side];
    for (my, row) in colors.chunks(modules).enumerate() {
        let mut line = vec![0xffu8; row_bytes];
        for (mx, dark) in row.iter().enumerate() {
            if !*dark {
                continue;
            }
            let x0 = (mx + QUIET_ZONE) * PNG_SCALE;
            for x in x0..x0 + PNG_SCALE {
                line[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        let y0 = (my + QUIET_ZONE) * PNG_SCALE;
        for y in y0..y0 + PNG_SCALE {
            pixels[y * row_bytes..(y + 1) * row_bytes].copy_from_slice(&line);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    // Each pixel row repeats 8 times: the `Up` filter makes 7 of 8 zeros.
    encoder.set_compression(png::Compression::Fastest);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the PNG back and decodes its QR code with an independent decoder (rqrr).
    pub(crate) fn decode_png(bytes: &[u8]) -> String {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_mask_chosen_is_the_one_the_qrcode_crate_chooses() {
        // Codes of many lengths and both modes (alphanumeric tickets, bytes), pseudo-random.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
        for n in 0..300 {
            let len = 1 + (next() % if n % 10 == 0 { 600 } else { 220 }) as usize;
            let code: String = (0..len)
                .map(|_| {
                    let r = next() as usize;
                    if n % 3 == 0 {
                        char::from(b'!' + (r % 90) as u8)
                    } else {
                        char::from(ALNUM[r % ALNUM.len()])
                    }
                })
                .collect();
            let theirs = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).unwrap();
            let (ours, width) = modules(&code).unwrap();
            assert_eq!(width, theirs.width(), "{code}");
            let theirs: Vec<bool> = theirs
                .to_colors()
                .iter()
                .map(|c| *c == Color::Dark)
                .collect();
            assert_eq!(ours, theirs, "{code}");
        }
    }

    #[test]
    fn the_packed_penalty_is_the_flat_one() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for width in [21, 25, 49, 57, 60] {
            for _ in 0..200 {
                let dark: Vec<bool> = (0..width * width)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Biased and clumped, so long runs, blocks and finder-like runs occur.
                        seed % 7 < 3
                    })
                    .collect();
                let rows: Vec<u64> = dark
                    .chunks_exact(width)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .fold(0, |bits, (x, d)| bits | (u64::from(*d) << x))
                    })
                    .collect();
                let columns: Vec<u64> = (0..width)
                    .map(|x| {
                        (0..width).fold(0, |bits, y| bits | (u64::from(dark[y * width + x]) << y))
                    })
                    .collect();
                assert_eq!(
                    packed::penalty(&rows, &columns, width),
                    penalty_flat(&dark, width),
                    "width {width}"
                );
            }
        }
    }

    #[test]
    fn the_png_decodes_to_the_code_and_the_svg_is_an_svg() {
        let code = "T2ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWX";
        assert_eq!(decode_png(&png(code).unwrap()), code);
        let svg = svg(code).unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{}",
            &svg[..80]
        );
    }
}
