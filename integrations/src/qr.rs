//! QR images of ticket codes: SVG and PNG (one bit per pixel, drawn from the module matrix,
//! so the heavy `image` crate is not needed; fast deflate: a QR PNG was most of a mail's
//! CPU cost when it was 8-bit greyscale at the default compression). Error correction level M (15% of the code may be
//! damaged), a quiet zone of 4 modules, codes in alphanumeric mode.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in PNGs.
const PNG_SCALE: usize = 8;
/// Light modules around the code (the standard's minimum).
const QUIET_ZONE: usize = 4;

fn qr(code: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).map_err(|e| e.to_string())
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
    let qr = qr(code)?;
    let modules = qr.width();
    let colors = qr.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    // One bit per pixel, most significant first: 1 is light, 0 dark.
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0xffu8; row_bytes * side];
    for (my, row) in colors.chunks(modules).enumerate() {
        let mut line = vec![0xffu8; row_bytes];
        for (mx, color) in row.iter().enumerate() {
            if *color != Color::Dark {
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
    encoder.set_compression(png::Compression::Fast);
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
