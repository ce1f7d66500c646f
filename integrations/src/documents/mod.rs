//! Invoices and credit notes as people read them: HTML for the browser, PDF for the books.
//! Both are rendered from the journaled [`Document`] alone, so a document reads the same
//! whenever it is fetched. The PDF embeds DejaVu Sans (`assets/`, its licence beside it):
//! krilla subsets the font, so every glyph renders and text can be copied and searched.

mod html;
mod pdf;

pub use html::html;
pub use pdf::{RenderError, pdf};

use engine::invoice::{Document, DocumentKind, Party};

/// `minor` units of `currency` as printed: `15300 EUR` → `153.00 EUR`.
fn money(minor: i64, currency: &str) -> String {
    match crate::money::to_decimal(minor, currency) {
        Ok(amount) => format!("{amount} {currency}"),
        Err(_) => format!("{minor} {currency} (minor units)"),
    }
}

/// A VAT rate in basis points as printed: `1900` → `19 %`, `550` → `5.5 %`.
fn rate(bp: u16) -> String {
    let whole = bp / 100;
    match bp % 100 {
        0 => format!("{whole} %"),
        f if f % 10 == 0 => format!("{whole}.{} %", f / 10),
        f => format!("{whole}.{f:02} %"),
    }
}

/// The lines of a party's block: name, address, VAT id, e-mail (what it has).
fn party_lines(p: &Party) -> Vec<String> {
    let mut lines = vec![p.name.clone()];
    lines.extend(p.address.iter().cloned());
    if !p.vat_id.is_empty() {
        lines.push(format!("VAT ID {}", p.vat_id));
    }
    if !p.email.is_empty() {
        lines.push(p.email.clone());
    }
    lines
}

/// The facts under the title: number, date, what it corrects, the event and registration.
fn facts(d: &Document) -> Vec<(String, String)> {
    let mut facts = vec![
        ("Number".to_owned(), d.display_number()),
        (
            "Date".to_owned(),
            d.issued_at.format("%Y-%m-%d").to_string(),
        ),
    ];
    if let DocumentKind::CreditNote { corrects } = d.kind {
        facts.push((
            "Corrects invoice".to_owned(),
            engine::invoice::display_number(corrects),
        ));
    }
    facts.push((
        "Event".to_owned(),
        format!(
            "{}, {}",
            d.event_title,
            d.event_starts_at.format("%Y-%m-%d %H:%M UTC")
        ),
    ));
    facts.push(("Registration".to_owned(), d.registration_id.to_string()));
    facts
}

/// The totals block: net, one VAT row per rate, total.
fn totals(d: &Document) -> Vec<(String, String)> {
    let mut rows = vec![("Net total".to_owned(), money(d.net_minor, &d.currency))];
    for row in &d.vat {
        rows.push((
            format!(
                "VAT {} on {}",
                rate(row.rate_bp),
                money(row.net_minor, &d.currency)
            ),
            money(row.vat_minor, &d.currency),
        ));
    }
    let label = match d.kind {
        DocumentKind::Invoice => "Total",
        DocumentKind::CreditNote { .. } => "Total credited",
    };
    rows.push((label.to_owned(), money(d.gross_minor, &d.currency)));
    rows
}

/// The closing remarks: gross or net prices, and how it was paid.
fn remarks(d: &Document) -> Vec<String> {
    let mut remarks = vec![if d.prices_include_vat {
        "Amounts include VAT.".to_owned()
    } else {
        "Amounts exclude VAT; VAT is added in the totals.".to_owned()
    }];
    match (d.kind, &d.paid_by) {
        (DocumentKind::Invoice, Some(by)) => {
            remarks.push(format!("Paid ({}).", by.replace('_', " ")))
        }
        (DocumentKind::CreditNote { .. }, Some(by)) => remarks.push(format!(
            "Refunded to the original payment ({}).",
            by.replace('_', " ")
        )),
        _ => {}
    }
    remarks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_money_print_plainly() {
        assert_eq!(rate(1900), "19 %");
        assert_eq!(rate(550), "5.5 %");
        assert_eq!(rate(725), "7.25 %");
        assert_eq!(rate(0), "0 %");
        assert_eq!(money(15_300, "EUR"), "153.00 EUR");
        assert_eq!(money(-850, "EUR"), "-8.50 EUR");
        assert_eq!(money(1200, "JPY"), "1200 JPY");
    }
}
