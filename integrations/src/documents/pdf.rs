//! A document as a one-page A4 PDF, written with krilla in DejaVu Sans (embedded, subset).

use super::{facts, money, party_lines, rate, remarks, totals};
use engine::invoice::Document;
use krilla::Document as Pdf;
use krilla::geom::{PathBuilder, Point};
use krilla::page::PageSettings;
use krilla::paint::Stroke;
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// A4 in points.
const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const BODY: f32 = 9.5;
/// Longest description printed on one line (longer ones are cut with an ellipsis).
const DESCRIPTION_CHARS: usize = 48;

/// Why a PDF could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("writing the PDF failed: {0}")]
    Pdf(String),
}

/// Text drawing with measurement (for right-aligned columns).
struct Pen<'a> {
    surface: Surface<'a>,
    font: Font,
    metrics: skrifa::FontRef<'static>,
}

impl Pen<'_> {
    fn text(&mut self, x: f32, y: f32, size: f32, text: &str) {
        self.surface.draw_text(
            Point::from_xy(x, y),
            self.font.clone(),
            size,
            text,
            false,
            TextDirection::Auto,
        );
    }

    /// Width of `text` at `size` (advances, without kerning).
    fn width(&self, size: f32, text: &str) -> f32 {
        let charmap = self.metrics.charmap();
        let glyphs = self
            .metrics
            .glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .filter_map(|c| charmap.map(c))
            .filter_map(|g| glyphs.advance_width(g))
            .sum()
    }

    /// `text` ending at `right`.
    fn right(&mut self, right: f32, y: f32, size: f32, text: &str) {
        let x = right - self.width(size, text);
        self.text(x, y, size, text);
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32) {
        let mut pb = PathBuilder::new();
        pb.move_to(x1, y);
        pb.line_to(x2, y);
        if let Some(path) = pb.finish() {
            self.surface.set_stroke(Some(Stroke {
                width: 0.6,
                ..Default::default()
            }));
            self.surface.draw_path(&path);
            self.surface.set_stroke(None);
        }
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// The document as PDF bytes.
pub fn pdf(d: &Document) -> Result<Vec<u8>, RenderError> {
    let font = Font::new(FONT.into(), 0).ok_or(RenderError::Font)?;
    let metrics = skrifa::FontRef::new(FONT).map_err(|_| RenderError::Font)?;
    let mut document = Pdf::new();
    document.set_metadata(
        krilla::metadata::Metadata::new()
            .title(format!("{} {}", d.title(), d.display_number()))
            .creator("regengine".to_owned()),
    );
    let settings =
        PageSettings::from_wh(WIDTH, HEIGHT).ok_or(RenderError::Pdf("page size".into()))?;
    let mut page = document.start_page_with(settings);
    {
        let mut pen = Pen {
            surface: page.surface(),
            font,
            metrics,
        };
        draw(&mut pen, d);
        pen.surface.finish();
    }
    page.finish();
    document
        .finish()
        .map_err(|e| RenderError::Pdf(format!("{e:?}")))
}

/// Lays the document out top to bottom.
fn draw(pen: &mut Pen<'_>, d: &Document) {
    let right = WIDTH - MARGIN;
    let mut y = MARGIN + 10.0;
    pen.text(MARGIN, y, 20.0, d.title());
    pen.right(right, y, 11.0, &d.display_number());
    y += 30.0;
    // Seller left, buyer right.
    let seller = party_lines(&d.seller);
    let buyer = party_lines(&d.buyer);
    pen.text(MARGIN, y, BODY, "Seller");
    pen.text(330.0, y, BODY, "Buyer");
    y += 14.0;
    for i in 0..seller.len().max(buyer.len()) {
        if let Some(l) = seller.get(i) {
            pen.text(MARGIN, y, BODY, &cut(l, 52));
        }
        if let Some(l) = buyer.get(i) {
            pen.text(330.0, y, BODY, &cut(l, 40));
        }
        y += 13.0;
    }
    y += 12.0;
    for (k, v) in facts(d) {
        pen.text(MARGIN, y, BODY, &k);
        pen.text(MARGIN + 110.0, y, BODY, &cut(&v, 70));
        y += 13.0;
    }
    y += 16.0;
    // Items: description, quantity, unit price, VAT, amount.
    let cols = [right - 250.0, right - 165.0, right - 95.0, right];
    pen.text(MARGIN, y, BODY, "Description");
    for (x, h) in cols.iter().zip(["Qty", "Unit price", "VAT", "Amount"]) {
        pen.right(*x, y, BODY, h);
    }
    pen.rule(MARGIN, right, y + 4.0);
    y += 17.0;
    for line in &d.lines {
        pen.text(MARGIN, y, BODY, &cut(&line.description, DESCRIPTION_CHARS));
        let cells = [
            line.quantity.to_string(),
            money(line.unit_minor, &d.currency),
            rate(line.vat_rate_bp),
            money(line.amount_minor, &d.currency),
        ];
        for (x, c) in cols.iter().zip(cells) {
            pen.right(*x, y, BODY, &c);
        }
        y += 15.0;
    }
    pen.rule(MARGIN, right, y - 8.0);
    y += 6.0;
    for (k, v) in totals(d) {
        pen.right(right - 120.0, y, BODY, &k);
        pen.right(right, y, BODY, &v);
        y += 14.0;
    }
    y += 16.0;
    for r in remarks(d) {
        pen.text(MARGIN, y, BODY, &r);
        y += 13.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::ids::{EventId, RegistrationId, UserId};
    use engine::invoice::{DocumentKind, Line, Party, VatRow};

    fn sample() -> Document {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .expect("a time")
            .to_utc();
        Document {
            number: 42,
            organizer: UserId::new(),
            kind: DocumentKind::Invoice,
            registration_id: RegistrationId::new(),
            event_id: EventId::new(),
            event_title: "Straße & Bühne – €uro Fest".into(),
            event_starts_at: at,
            issued_at: at,
            seller: Party {
                name: "Conf GmbH".into(),
                address: vec!["Hauptstr. 1".into()],
                vat_id: "DE123456789".into(),
                email: String::new(),
            },
            buyer: Party {
                name: "Zoë Ørsted".into(),
                email: "zoe@example.com".into(),
                ..Party::default()
            },
            currency: "EUR".into(),
            prices_include_vat: true,
            lines: vec![Line {
                description: "Standard".into(),
                quantity: 2,
                unit_minor: 8500,
                amount_minor: 17_000,
                vat_rate_bp: 1900,
            }],
            vat: vec![VatRow {
                rate_bp: 1900,
                net_minor: 14_286,
                vat_minor: 2_714,
                gross_minor: 17_000,
            }],
            net_minor: 14_286,
            vat_minor: 2_714,
            gross_minor: 17_000,
            paid_by: Some("stripe".into()),
        }
    }

    /// Read back by poppler's `pdftotext` (installed by `.ci/run`): the text a reader or an
    /// accounting import gets, non-ASCII names included.
    #[test]
    fn pdftotext_reads_number_parties_lines_and_totals() {
        let bytes = pdf(&sample()).expect("a PDF");
        assert!(bytes.starts_with(b"%PDF-"));
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("invoice.pdf");
        std::fs::write(&path, &bytes).expect("written");
        // KEEP_PDF=path keeps a copy to look at.
        if let Ok(keep) = std::env::var("KEEP_PDF") {
            std::fs::write(keep, &bytes).expect("kept");
        }
        let out = std::process::Command::new("pdftotext")
            .args(["-layout", path.to_str().expect("utf-8"), "-"])
            .output()
            .expect("pdftotext runs (poppler-utils; .ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 text");
        for expected in [
            "Invoice",
            "INV-000042",
            "Conf GmbH",
            "VAT ID DE123456789",
            "Zoë Ørsted",
            "Straße & Bühne – €uro Fest",
            "Standard",
            "85.00 EUR",
            "170.00 EUR",
            "142.86 EUR",
            "27.14 EUR",
            "19 %",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }
}
