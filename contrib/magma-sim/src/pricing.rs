//! Price quote and the amounts derived from it for an order.

use anyhow::{Context, bail};

/// The `liquidity_per_usd` quote and the exchange rate used for buyer fees.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Price {
    /// As configured (echoed verbatim by the API).
    pub sats: String,
    pub usd: String,
    sats_value: u64,
    sats_per_usd: f64,
}

/// Amounts of one order, all derived from `usd_cents` and the price at buy time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OrderAmounts {
    /// Channel size: `usd_cents / 100 × price.sats`, rounded down.
    pub channel_sats: u64,
    /// Buyer fee in USD, two decimals.
    pub fee_usd: String,
    /// Buyer fee in sats = the invoice amount.
    pub fee_sats: u64,
}

impl Price {
    /// Parses the quote; `sats` must be a positive integer, `usd` a positive decimal.
    pub fn parse(sats: &str, usd: &str, btc_sats_per_usd: Option<f64>) -> anyhow::Result<Price> {
        let sats_value: u64 = sats
            .parse()
            .with_context(|| format!("price sats `{sats}` is not an integer"))?;
        let usd_value: f64 = usd
            .parse()
            .with_context(|| format!("price usd `{usd}` is not a decimal number"))?;
        if sats_value == 0 {
            bail!("price sats must be positive");
        }
        if !usd_value.is_finite() || usd_value <= 0.0 {
            bail!("price usd must be a positive number");
        }
        let sats_per_usd = match btc_sats_per_usd {
            Some(rate) if !rate.is_finite() || rate <= 0.0 => {
                bail!("btc_sats_per_usd must be a positive number")
            }
            Some(rate) => rate,
            None => sats_value as f64 / usd_value,
        };
        Ok(Price {
            sats: sats.to_string(),
            usd: usd.to_string(),
            sats_value,
            sats_per_usd,
        })
    }

    pub fn amounts(&self, usd_cents: u64) -> OrderAmounts {
        let channel = u128::from(usd_cents) * u128::from(self.sats_value) / 100;
        OrderAmounts {
            channel_sats: u64::try_from(channel).unwrap_or(u64::MAX),
            fee_usd: format_cents(usd_cents),
            // `as` saturates for out-of-range floats; the caller caps usd_cents.
            fee_sats: (usd_cents as f64 / 100.0 * self.sats_per_usd).round() as u64,
        }
    }

    /// USD value of an amount of sats, two decimals.
    pub fn usd_of_sats(&self, sats: u64) -> String {
        format!("{:.2}", sats as f64 / self.sats_per_usd)
    }
}

/// `5000` → `"50.00"`.
pub(crate) fn format_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `5000000` → `"0.05"`; at most 8 decimals, trailing zeros trimmed.
pub(crate) fn format_btc(sats: u64) -> String {
    let whole = sats / 100_000_000;
    let frac = sats % 100_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:08}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_documented_formulas() {
        let price = Price::parse("543260", "501.09", None).expect("valid price");
        let a = price.amounts(5000);
        assert_eq!(a.channel_sats, 27_163_000);
        assert_eq!(a.fee_usd, "50.00");
        // 50 × 543260 / 501.09 = 54207.8…
        assert_eq!(a.fee_sats, 54_208);
        assert_eq!(price.amounts(501).channel_sats, 2_721_732);
    }

    #[test]
    fn override_rate_is_used_for_fees() {
        let price = Price::parse("543260", "501.09", Some(1000.0)).expect("valid price");
        assert_eq!(price.amounts(1234).fee_sats, 12_340);
    }

    #[test]
    fn bad_prices_are_rejected() {
        assert!(Price::parse("12.5", "1", None).is_err());
        assert!(Price::parse("100", "0", None).is_err());
        assert!(Price::parse("100", "abc", None).is_err());
        assert!(Price::parse("100", "1", Some(-1.0)).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_btc(5_000_000), "0.05");
        assert_eq!(format_btc(200_000_000), "2");
        assert_eq!(format_btc(27_163_000), "0.27163");
    }
}
