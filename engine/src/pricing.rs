//! The one price calculation: a hold decides its price with it (in the pool actor, with the
//! voucher it redeems), the journal records the result in `SeatsHeld`, and the confirm and
//! the receipt show that record. Nothing recomputes a price later, so a ticket type or
//! voucher changed after the hold never changes what the buyer was quoted.
//!
//! Money is integer minor units (cents) of the ticket type's currency. Rounding, per seat:
//! - a percentage discount is `unit × percent / 100`, rounded half up to a whole minor unit
//!   (12% of 999 = 119.88 → 120; 10% of 5 = 0.5 → 1);
//! - a fixed discount is at most the unit price (a seat never costs less than 0);
//! - the line is the per-seat figure times the quantity, so every seat of a registration
//!   costs the same and a receipt's lines add up exactly.

use serde::{Deserialize, Serialize};

/// A voucher's reduction of the unit price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discount {
    /// Percent off each seat (1..=100).
    Percent(u8),
    /// Minor units off each seat (at most the unit price is taken off).
    Fixed(i64),
}

/// What a registration costs, as decided when its seats were held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// ISO 4217 code.
    pub currency: String,
    /// The ticket type's price of one seat.
    pub unit_minor: i64,
    /// Seats.
    pub quantity: u16,
    /// `unit_minor × quantity`.
    pub subtotal_minor: i64,
    /// Taken off by the voucher (per-seat discount × quantity).
    pub discount_minor: i64,
    /// What is due: `subtotal_minor − discount_minor`, never negative.
    pub total_minor: i64,
    /// The voucher redeemed, if any.
    pub voucher: Option<String>,
    /// Its VAT, decided with the hold (none: held before VAT was recorded, or no VAT rule).
    #[serde(default)]
    pub tax: Option<Tax>,
}

/// Largest VAT rate, in basis points (50 %).
pub const VAT_RATE_BP_MAX: u16 = 5_000;

/// How VAT applies to a ticket type's price: its rate, and whether the price includes it
/// (gross) or VAT is added on top (net). Per event (`invoicing.prices`) and ticket type
/// (`vat_rate_bp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRule {
    /// Basis points: 1900 is 19 %.
    pub rate_bp: u16,
    /// Whether prices include the VAT (gross).
    pub included: bool,
}

/// The VAT of a registration's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tax {
    /// Basis points: 1900 is 19 %.
    pub rate_bp: u16,
    /// Whether the ticket type's price included it (gross) or it was added (net).
    pub included: bool,
    /// The amount without VAT.
    pub net_minor: i64,
    /// The VAT; `net_minor + vat_minor` is the price's `total_minor`.
    pub vat_minor: i64,
}

/// `value × num / den` rounded half up, for non-negative values (i128: no overflow).
fn ratio_half_up(value: i64, num: i64, den: i64) -> i64 {
    let (v, n, d) = (i128::from(value), i128::from(num), i128::from(den));
    i64::try_from((v * n * 2 + d) / (d * 2)).unwrap_or(i64::MAX)
}

impl Tax {
    /// The VAT of `amount_minor` under `rule`: of a gross amount it is the part above
    /// round(amount / (1 + rate)); on a net amount it is round(amount × rate), added.
    pub fn of(amount_minor: i64, rule: TaxRule) -> Self {
        let amount = amount_minor.max(0);
        let rate = i64::from(rule.rate_bp);
        let (net, vat) = if rule.included {
            let net = ratio_half_up(amount, 10_000, 10_000 + rate);
            (net, amount - net)
        } else {
            (amount, ratio_half_up(amount, rate, 10_000))
        };
        Self {
            rate_bp: rule.rate_bp,
            included: rule.included,
            net_minor: net,
            vat_minor: vat,
        }
    }
}

impl Price {
    /// The price with its VAT under `rule` (none: unchanged): a net price's total grows by
    /// the VAT, a gross one's stays and is split. A rate of 0 records nothing (net = total,
    /// VAT 0, gross or net alike), so VAT-free holds journal what they did before.
    pub fn taxed(mut self, rule: Option<TaxRule>) -> Self {
        if let Some(rule) = rule.filter(|r| r.rate_bp > 0) {
            let tax = Tax::of(self.total_minor, rule);
            self.total_minor = tax.net_minor + tax.vat_minor;
            self.tax = Some(tax);
        }
        self
    }
}

/// The discount on one seat of price `unit_minor` (0 ≤ result ≤ unit_minor).
pub fn seat_discount(unit_minor: i64, discount: Discount) -> i64 {
    let unit = unit_minor.max(0);
    match discount {
        // Half up: (unit × p + 50) / 100 for non-negative values. unit ≤ 10^12, so no overflow.
        Discount::Percent(p) => ((unit * i64::from(p.min(100)) + 50) / 100).min(unit),
        Discount::Fixed(amount) => amount.clamp(0, unit),
    }
}

/// The price of `quantity` seats at `unit_minor`, with the voucher `voucher` (its code and
/// discount, if it has one).
pub fn quote(
    unit_minor: i64,
    currency: &str,
    quantity: u16,
    voucher: Option<(&str, Option<Discount>)>,
) -> Price {
    let unit = unit_minor.max(0);
    let per_seat = voucher
        .and_then(|(_, d)| d)
        .map_or(0, |d| seat_discount(unit, d));
    let quantity_i = i64::from(quantity);
    let subtotal = unit.saturating_mul(quantity_i);
    let discount = per_seat.saturating_mul(quantity_i);
    Price {
        currency: currency.to_owned(),
        unit_minor: unit,
        quantity,
        subtotal_minor: subtotal,
        discount_minor: discount,
        total_minor: subtotal - discount,
        voucher: voucher.map(|(code, _)| code.to_owned()),
        tax: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentages_round_half_up_per_seat() {
        assert_eq!(seat_discount(999, Discount::Percent(12)), 120); // 119.88
        assert_eq!(seat_discount(5, Discount::Percent(10)), 1); // 0.5
        assert_eq!(seat_discount(4, Discount::Percent(10)), 0); // 0.4
        assert_eq!(seat_discount(2500, Discount::Percent(100)), 2500);
        let p = quote(999, "EUR", 3, Some(("SPRING", Some(Discount::Percent(12)))));
        assert_eq!(
            (p.subtotal_minor, p.discount_minor, p.total_minor),
            (2997, 360, 2637)
        );
        assert_eq!(p.voucher.as_deref(), Some("SPRING"));
    }

    #[test]
    fn fixed_discounts_stop_at_zero() {
        let p = quote(1000, "EUR", 2, Some(("BIG", Some(Discount::Fixed(1500)))));
        assert_eq!((p.discount_minor, p.total_minor), (2000, 0));
        let p = quote(1000, "EUR", 2, Some(("ACCESS", None)));
        assert_eq!((p.discount_minor, p.total_minor), (0, 2000));
    }

    #[test]
    fn vat_of_gross_and_net_prices() {
        let gross = TaxRule {
            rate_bp: 1900,
            included: true,
        };
        let net = TaxRule {
            rate_bp: 1900,
            included: false,
        };
        // 85.00 gross at 19 %: 71.43 net + 13.57 VAT.
        let p = quote(8500, "EUR", 1, None).taxed(Some(gross));
        assert_eq!(p.total_minor, 8500);
        assert_eq!(
            p.tax.map(|t| (t.net_minor, t.vat_minor)),
            Some((7143, 1357))
        );
        // 100.00 net × 2 at 19 %: 238.00 due.
        let p = quote(10_000, "EUR", 2, None).taxed(Some(net));
        assert_eq!(p.total_minor, 23_800);
        assert_eq!(
            p.tax.map(|t| (t.net_minor, t.vat_minor)),
            Some((20_000, 3_800))
        );
        // A voucher's discount comes off before VAT; 7 % of 9.99 = 0.6993 → 0.70.
        let p = quote(999, "EUR", 1, None).taxed(Some(TaxRule {
            rate_bp: 700,
            included: false,
        }));
        assert_eq!(p.total_minor, 1069);
        assert_eq!(
            quote(0, "EUR", 1, None)
                .taxed(Some(gross))
                .tax
                .map(|t| t.vat_minor),
            Some(0)
        );
        assert_eq!(quote(500, "EUR", 1, None).taxed(None).tax, None);
    }

    proptest! {
        #[test]
        fn vat_splits_the_total_exactly(
            unit in 0i64..=crate::model::PRICE_MINOR_MAX,
            quantity in 1u16..=crate::model::PER_ORDER_MAX,
            rate_bp in 0u16..=VAT_RATE_BP_MAX,
            included: bool,
        ) {
            let p = quote(unit, "EUR", quantity, None).taxed(Some(TaxRule { rate_bp, included }));
            let Some(tax) = p.tax else {
                prop_assert_eq!(rate_bp, 0);
                prop_assert_eq!(p.total_minor, unit * i64::from(quantity));
                return Ok(());
            };
            prop_assert_eq!(tax.net_minor + tax.vat_minor, p.total_minor);
            prop_assert!(tax.net_minor >= 0 && tax.vat_minor >= 0);
            // The VAT is the rate of the net amount, to within half a minor unit (gross
            // prices: within half a unit of the net, scaled by 1 + rate).
            let exact = i128::from(tax.net_minor) * i128::from(rate_bp);
            let off = (i128::from(tax.vat_minor) * 10_000 - exact).abs();
            prop_assert!(off <= 5_000 + i128::from(rate_bp), "off by {off}");
            if !included {
                prop_assert_eq!(tax.net_minor, unit * i64::from(quantity));
            }
        }


        #[test]
        fn totals_add_up(
            unit in 0i64..=crate::model::PRICE_MINOR_MAX,
            quantity in 1u16..=crate::model::PER_ORDER_MAX,
            percent in 1u8..=100,
            fixed in 0i64..=crate::model::PRICE_MINOR_MAX,
            use_percent: bool,
        ) {
            let d = if use_percent { Discount::Percent(percent) } else { Discount::Fixed(fixed) };
            let p = quote(unit, "EUR", quantity, Some(("V", Some(d))));
            prop_assert_eq!(p.subtotal_minor, unit * i64::from(quantity));
            prop_assert_eq!(p.total_minor + p.discount_minor, p.subtotal_minor);
            prop_assert!(p.total_minor >= 0 && p.discount_minor >= 0);
            prop_assert_eq!(p.discount_minor % i64::from(quantity), 0);
            // Within half a minor unit per seat of the exact percentage.
            if use_percent {
                let exact = unit as i128 * i128::from(percent);
                let per_seat = i128::from(p.discount_minor / i64::from(quantity)) * 100;
                prop_assert!((per_seat - exact).abs() <= 50);
            }
        }
    }
}
