//! Pricing a purchase from Magma's quote: how much inbound a given spend buys, what it costs in
//! sats, and the resulting price in ppm. Integer arithmetic only, so the same inputs always give
//! the same figures.

use serde::Serialize;

use crate::magma::Price;

/// Magma's smallest order.
pub const MAGMA_MIN_USD_CENTS: u64 = 500;

/// What the operator asked to price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    UsdCents(u64),
    /// At least this much inbound.
    InboundSat(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// Inbound sats per USD spent, as Magma quotes it.
    pub sats_per_usd: u64,
    /// USD of receiving capacity per USD spent, as Magma quotes it.
    pub usd_capacity_per_usd: String,
    pub usd_cents: u64,
    pub expected_inbound_sat: u64,
    /// What the invoice should ask for, rounded up.
    pub expected_cost_sat: u64,
    /// `expected_cost_sat / expected_inbound_sat × 1e6`, rounded up.
    pub price_ppm: u64,
    /// The amount was raised to Magma's 500-cent minimum.
    pub raised_to_minimum: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("Magma quoted an unusable price ({sats} sats and {usd} USD per USD)")]
    UnusablePrice { sats: u64, usd: String },
    #[error("the amount is too large to price")]
    TooLarge,
}

/// Prices `ask` at `price`.
pub fn quote(price: &Price, ask: Ask) -> Result<Quote, QuoteError> {
    let sats = u128::from(price.sats.0);
    let unusable = || QuoteError::UnusablePrice {
        sats: price.sats.0,
        usd: price.usd.to_string(),
    };
    let (usd_num, usd_den) = price.usd.as_fraction().ok_or_else(unusable)?;
    if sats == 0 || usd_num == 0 {
        return Err(unusable());
    }
    let too_large = || QuoteError::TooLarge;
    let mul = |a: u128, b: u128| a.checked_mul(b).ok_or_else(too_large);
    let wanted_cents = match ask {
        Ask::UsdCents(c) => u128::from(c),
        Ask::InboundSat(inbound) => mul(u128::from(inbound), 100)?.div_ceil(sats),
    };
    let raised = wanted_cents < u128::from(MAGMA_MIN_USD_CENTS);
    let cents = wanted_cents.max(u128::from(MAGMA_MIN_USD_CENTS));
    let inbound = mul(cents, sats)? / 100;
    if inbound == 0 {
        return Err(unusable());
    }
    // `sats` buys `usd` dollars of capacity, so one dollar is sats/usd sats:
    // cost = cents/100 × sats × usd_den / usd_num.
    let cost = mul(mul(cents, sats)?, usd_den)?.div_ceil(mul(100, usd_num)?);
    let ppm = mul(cost, 1_000_000)?.div_ceil(inbound);
    let to_u64 = |v: u128| u64::try_from(v).map_err(|_| QuoteError::TooLarge);
    Ok(Quote {
        sats_per_usd: price.sats.0,
        usd_capacity_per_usd: price.usd.to_string(),
        usd_cents: to_u64(cents)?,
        expected_inbound_sat: to_u64(inbound)?,
        expected_cost_sat: to_u64(cost)?,
        price_ppm: to_u64(ppm)?,
        raised_to_minimum: raised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(sats: &str, usd: &str) -> Price {
        serde_json::from_value(serde_json::json!({"sats": sats, "usd": usd})).unwrap()
    }

    #[test]
    fn pricing_table() {
        let docs = price("543260", "501.09");
        // (ask, usd_cents, inbound, cost, ppm, raised) — worked by hand:
        // $50 × 543,260 = 27,163,000 sats; cost = 27,163,000 / 501.09 = 54,207.83 → 54,208;
        // ppm = 54,208 / 27,163,000 × 1e6 = 1995.65 → 1996.
        let cases = [
            (Ask::UsdCents(5000), 5000, 27_163_000, 54_208, 1996, false),
            // $5 → 2,716,300 sats (the docs' figure); cost 5,420.78 → 5,421.
            (Ask::UsdCents(500), 500, 2_716_300, 5_421, 1996, false),
            // 1,000,000 sats needs 184.07 cents → raised to 500.
            (
                Ask::InboundSat(1_000_000),
                500,
                2_716_300,
                5_421,
                1996,
                true,
            ),
            // 10,000,000 sats needs ceil(1840.74) = 1841 cents → 10,001,416.6 sats;
            // cost = 10,001,416.6 / 501.09 = 19,959.6 → 19,960.
            (
                Ask::InboundSat(10_000_000),
                1841,
                10_001_416,
                19_960,
                1996,
                false,
            ),
            (Ask::UsdCents(499), 500, 2_716_300, 5_421, 1996, true),
        ];
        for (ask, cents, inbound, cost, ppm, raised) in cases {
            let q = quote(&docs, ask).unwrap();
            assert_eq!(
                (
                    q.usd_cents,
                    q.expected_inbound_sat,
                    q.expected_cost_sat,
                    q.price_ppm,
                    q.raised_to_minimum
                ),
                (cents, inbound, cost, ppm, raised),
                "{ask:?}"
            );
            assert_eq!(q.sats_per_usd, 543_260);
        }
    }

    #[test]
    fn an_expensive_market_shows_in_ppm() {
        // $1 buys only $50 of capacity: 2% = 20,000 ppm.
        let q = quote(&price("54326", "50"), Ask::UsdCents(1000)).unwrap();
        assert_eq!(q.expected_inbound_sat, 543_260);
        assert_eq!(q.expected_cost_sat, 10_866); // 543,260 / 50 = 10,865.2 → 10,866
        assert_eq!(q.price_ppm, 20_002);
    }

    #[test]
    fn zero_prices_are_refused() {
        assert!(quote(&price("0", "501.09"), Ask::UsdCents(500)).is_err());
        assert!(quote(&price("543260", "0"), Ask::UsdCents(500)).is_err());
        assert!(quote(&price("543260", "0.000"), Ask::UsdCents(500)).is_err());
    }

    #[test]
    fn huge_asks_do_not_overflow() {
        let r = quote(&price("18446744073709551615", "1"), Ask::UsdCents(u64::MAX));
        assert_eq!(r, Err(QuoteError::TooLarge));
    }
}
