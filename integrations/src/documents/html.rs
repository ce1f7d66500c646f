//! A document as a self-contained HTML page (inline style, no scripts, every text escaped).

use super::{facts, money, party_lines, rate, remarks, totals};
use engine::invoice::Document;
use std::fmt::Write;

/// `text` with `& < > " '` escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:46em;margin:2em auto;color:#111}\
table{border-collapse:collapse;width:100%}th,td{padding:.3em .5em;text-align:left}\
td.n,th.n{text-align:right;white-space:nowrap}thead th{border-bottom:1px solid #444}\
tfoot td{border-top:1px solid #ccc}tfoot tr:last-child td{font-weight:bold;border-top:1px solid #444}\
.parties{display:flex;justify-content:space-between;margin:1.5em 0}.facts td{padding:.1em .5em .1em 0}";

/// The document as an HTML page.
pub fn html(d: &Document) -> String {
    let title = format!("{} {}", d.title(), d.display_number());
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(d.title())
    );
    out.push_str("<div class=\"parties\"><div><strong>Seller</strong><br>");
    let seller: Vec<String> = party_lines(&d.seller).iter().map(|l| esc(l)).collect();
    out.push_str(&seller.join("<br>"));
    out.push_str("</div><div><strong>Buyer</strong><br>");
    let buyer: Vec<String> = party_lines(&d.buyer).iter().map(|l| esc(l)).collect();
    out.push_str(&buyer.join("<br>"));
    out.push_str("</div></div>\n<table class=\"facts\">");
    for (k, v) in facts(d) {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v));
    }
    out.push_str("</table>\n<h2>Items</h2>\n<table><thead><tr><th>Description</th><th class=\"n\">Qty</th><th class=\"n\">Unit price</th><th class=\"n\">VAT</th><th class=\"n\">Amount</th></tr></thead><tbody>");
    for line in &d.lines {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&line.description),
            line.quantity,
            esc(&money(line.unit_minor, &d.currency)),
            esc(&rate(line.vat_rate_bp)),
            esc(&money(line.amount_minor, &d.currency)),
        );
    }
    out.push_str("</tbody><tfoot>");
    for (k, v) in totals(d) {
        let _ = write!(
            out,
            "<tr><td colspan=\"4\" class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&k),
            esc(&v)
        );
    }
    out.push_str("</tfoot></table>\n");
    for r in remarks(d) {
        let _ = write!(out, "<p>{}</p>", esc(&r));
    }
    out.push_str("\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            super::esc("<b>A & \"B\"</b>"),
            "&lt;b&gt;A &amp; &quot;B&quot;&lt;/b&gt;"
        );
    }
}
