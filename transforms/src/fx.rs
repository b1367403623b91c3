//! Exchange rates (`--fx`, CSV `date,currency,rate`): how many units of the
//! reporting currency one unit of `currency` buys on `date`. A missing rate
//! leaves `spend_reporting` null and is listed in the run summary; it is never
//! guessed from another day.

use crate::TransformError;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;

#[derive(Debug, Default)]
pub struct FxRates {
    reporting: String,
    rates: HashMap<(NaiveDate, String), Decimal>,
}

impl FxRates {
    /// Only the identity rate (reporting currency → itself).
    pub fn identity(reporting: &str) -> Self {
        FxRates {
            reporting: reporting.to_uppercase(),
            rates: HashMap::new(),
        }
    }

    pub fn parse(name: &str, bytes: &[u8], reporting: &str) -> Result<Self, TransformError> {
        let bad = |m: String| TransformError::Input(format!("fx file {name}: {m}"));
        let mut fx = FxRates::identity(reporting);
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|h| h.to_lowercase())
            .collect();
        let col = |n: &str| {
            headers
                .iter()
                .position(|h| h == n)
                .ok_or_else(|| bad("needs the columns date,currency,rate".into()))
        };
        let (d, c, r) = (col("date")?, col("currency")?, col("rate")?);
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(format!("line {line}: {e}")))?;
            let date = NaiveDate::parse_from_str(rec.get(d).unwrap_or(""), "%Y-%m-%d")
                .map_err(|_| bad(format!("line {line}: date must be YYYY-MM-DD")))?;
            let currency = rec.get(c).unwrap_or("").to_uppercase();
            if currency.len() != 3 || !currency.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(bad(format!(
                    "line {line}: currency '{currency}' is not an ISO 4217 code"
                )));
            }
            let rate = Decimal::from_str(rec.get(r).unwrap_or(""))
                .ok()
                .filter(|r| r.is_sign_positive() && !r.is_zero())
                .ok_or_else(|| bad(format!("line {line}: rate must be a positive decimal")))?;
            fx.rates.insert((date, currency), rate);
        }
        Ok(fx)
    }

    pub fn reporting(&self) -> &str {
        &self.reporting
    }

    /// The rate from `currency` on `date`, if known.
    pub fn rate(&self, date: NaiveDate, currency: &str) -> Option<Decimal> {
        if currency.eq_ignore_ascii_case(&self.reporting) {
            return Some(Decimal::ONE);
        }
        self.rates.get(&(date, currency.to_uppercase())).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_day_and_never_guessed() {
        let fx = FxRates::parse("fx.csv", b"date,currency,rate\n2026-01-01,eur,1.10\n", "usd").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert_eq!(fx.rate(d, "EUR"), Some(Decimal::from_str("1.10").unwrap()));
        assert_eq!(fx.rate(d.succ_opt().unwrap(), "EUR"), None);
        assert_eq!(fx.rate(d, "USD"), Some(Decimal::ONE));
        assert!(FxRates::parse("fx.csv", b"date,currency,rate\n2026-01-01,EUR,-1\n", "USD").is_err());
        assert!(FxRates::parse("fx.csv", b"day,cur\n", "USD").is_err());
    }
}
