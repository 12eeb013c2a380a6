//! Exact decimal quantities and money.
//!
//! Every amount is a `rust_decimal::Decimal` with a fixed maximum number of decimal places.
//! The store keeps them as scaled 64-bit integers (thousandths of a base unit, cents, ten-
//! thousandths of a currency unit) so that SQLite and PostgreSQL both `SUM` them exactly and
//! give identical results. Input with more places than a type allows is refused, never rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a decimal string was refused. The message is shown to API clients next to the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("is not a decimal number written as a string, such as \"12.5\"")]
    Syntax,
    #[error("has more than {0} decimal places")]
    TooPrecise(u32),
    #[error("is larger than {0}")]
    TooLarge(&'static str),
    #[error("must not be negative")]
    Negative,
    #[error("must be greater than zero")]
    NotPositive,
}

macro_rules! fixed_point {
    ($(#[$doc:meta])* $name:ident, scale = $scale:expr, max = $max:expr, max_text = $max_text:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Decimal);

        impl $name {
            /// Decimal places kept, and the power of ten used by the store's integer column.
            pub const SCALE: u32 = $scale;
            pub const ZERO: Self = Self(Decimal::ZERO);

            /// Accepts a decimal that fits the type exactly; never rounds.
            pub fn new(value: Decimal) -> Result<Self, DecimalError> {
                let value = value.normalize();
                if value.scale() > Self::SCALE {
                    return Err(DecimalError::TooPrecise(Self::SCALE));
                }
                if value.abs() > Decimal::from($max as i64) {
                    return Err(DecimalError::TooLarge($max_text));
                }
                Ok(Self(value))
            }

            pub fn parse(text: &str) -> Result<Self, DecimalError> {
                let text = text.trim();
                if text.is_empty() || text.contains(['e', 'E', '_']) {
                    return Err(DecimalError::Syntax);
                }
                // A well-formed number that Decimal cannot hold is too large or too precise,
                // not a syntax error; say which.
                let value = Decimal::from_str_exact(text).map_err(|_| {
                    let digits = text.trim_start_matches(['-', '+']);
                    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
                    let well_formed = !int.is_empty()
                        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
                    if !well_formed {
                        DecimalError::Syntax
                    } else if int.trim_start_matches('0').len() > 20 {
                        DecimalError::TooLarge($max_text)
                    } else {
                        DecimalError::TooPrecise(Self::SCALE)
                    }
                })?;
                Self::new(value)
            }

            /// A value that must be zero or more (stock quantities, prices).
            pub fn parse_non_negative(text: &str) -> Result<Self, DecimalError> {
                let v = Self::parse(text)?;
                if v.0.is_sign_negative() && !v.0.is_zero() {
                    return Err(DecimalError::Negative);
                }
                Ok(v)
            }

            /// A value that must be more than zero (a line's quantity, a pack's size).
            pub fn parse_positive(text: &str) -> Result<Self, DecimalError> {
                let v = Self::parse_non_negative(text)?;
                if v.0.is_zero() {
                    return Err(DecimalError::NotPositive);
                }
                Ok(v)
            }

            pub fn value(self) -> Decimal {
                self.0
            }

            /// The integer the store keeps: the value times 10^SCALE. Exact by construction.
            pub fn to_scaled(self) -> i64 {
                let mut d = self.0;
                d.rescale(Self::SCALE);
                i64::try_from(d.mantissa()).expect("bounded by MAX, so it fits in i64")
            }

            pub fn from_scaled(raw: i64) -> Self {
                Self(Decimal::new(raw, Self::SCALE).normalize())
            }

            pub fn is_zero(self) -> bool {
                self.0.is_zero()
            }

            pub fn checked_add(self, other: Self) -> Option<Self> {
                Self::new(self.0.checked_add(other.0)?).ok()
            }

            pub fn checked_sub(self, other: Self) -> Option<Self> {
                Self::new(self.0.checked_sub(other.0)?).ok()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.normalize(), f)
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        /// Serialized as a JSON string so no client ever parses it as a float.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_point!(
    /// A quantity of goods in an item's base unit (pieces, kg, litres…), to 1/1000 of the unit.
    Quantity, scale = 3, max = 1_000_000_000_000i64, max_text = "1000000000000"
);
fixed_point!(
    /// An amount of money, to the cent (fen).
    Money, scale = 2, max = 10_000_000_000_000i64, max_text = "10000000000000"
);
fixed_point!(
    /// The value of one base unit of an item, to 1/10000 of the currency unit
    /// (a mask can be worth 0.4500 yuan).
    UnitValue, scale = 4, max = 1_000_000_000i64, max_text = "1000000000"
);

impl Quantity {
    /// Converts a quantity given in a pack or alternative unit into base units (2300 jin × 0.5).
    pub fn from_units(amount: Decimal, factor: Decimal) -> Result<Self, DecimalError> {
        let base = amount
            .checked_mul(factor)
            .ok_or(DecimalError::TooLarge("1000000000000"))?;
        Self::new(base)
    }

    /// The value of this quantity at a unit value, rounded half away from zero to the cent.
    /// This is the one place a value is rounded, so every report that sums frozen movement
    /// values agrees to the cent.
    pub fn value_at(self, unit: UnitValue) -> Money {
        let raw = self.0 * unit.value();
        let cents = raw.round_dp_with_strategy(
            Money::SCALE,
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        );
        Money::new(cents).expect("quantity and unit value bounds keep the product in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_strings_and_refuses_rounding() {
        assert_eq!(Quantity::parse("13000").unwrap().to_string(), "13000");
        assert_eq!(Quantity::parse("1.500").unwrap().to_string(), "1.5");
        assert_eq!(Quantity::parse("0.001").unwrap().to_scaled(), 1);
        assert_eq!(Quantity::parse("0.0001"), Err(DecimalError::TooPrecise(3)));
        assert_eq!(Money::parse("0.455"), Err(DecimalError::TooPrecise(2)));
        assert_eq!(UnitValue::parse("0.4500").unwrap().to_scaled(), 4500);
        assert_eq!(Quantity::parse("1e3"), Err(DecimalError::Syntax));
        assert_eq!(Quantity::parse("abc"), Err(DecimalError::Syntax));
        assert_eq!(Quantity::parse(""), Err(DecimalError::Syntax));
        assert_eq!(
            Quantity::parse("0.00000000000000000000000000000001"),
            Err(DecimalError::TooPrecise(3))
        );
        assert_eq!(
            Quantity::parse("1000000000000.001"),
            Err(DecimalError::TooLarge("1000000000000"))
        );
        assert_eq!(
            Quantity::parse("99999999999999999999999999999"),
            Err(DecimalError::TooLarge("1000000000000"))
        );
    }

    #[test]
    fn sign_rules() {
        assert_eq!(
            Quantity::parse_positive("0"),
            Err(DecimalError::NotPositive)
        );
        assert_eq!(Quantity::parse_positive("-1"), Err(DecimalError::Negative));
        assert_eq!(Quantity::parse_non_negative("-0").unwrap(), Quantity::ZERO);
        assert!(Quantity::parse("-5").is_ok());
    }

    #[test]
    fn scaled_round_trip() {
        for s in ["0", "1", "0.001", "1150", "999999999999.999", "-3.25"] {
            let q = Quantity::parse(s).unwrap();
            assert_eq!(Quantity::from_scaled(q.to_scaled()), q, "{s}");
        }
        assert_eq!(Money::parse("99999.99").unwrap().to_scaled(), 9_999_999);
    }

    #[test]
    fn jin_to_kg_and_value() {
        let kg = Quantity::from_units(Decimal::from(2300), Decimal::new(5, 1)).unwrap();
        assert_eq!(kg.to_string(), "1150");
        let v = kg.value_at(UnitValue::parse("17.3913").unwrap());
        assert_eq!(v.to_string(), "20000"); // 1150 × 17.3913 = 19999.995 → 20000.00
        let masks = Quantity::parse("13000").unwrap();
        assert_eq!(
            masks
                .value_at(UnitValue::parse("0.45").unwrap())
                .to_string(),
            "5850"
        );
    }

    #[test]
    fn json_is_a_string_both_ways() {
        let q: Quantity = serde_json::from_str("\"2.5\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"2.5\"");
        assert!(serde_json::from_str::<Quantity>("2.5").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any quantity the type accepts survives text and the store's integers unchanged.
        #[test]
        fn quantity_round_trips(milli in -1_000_000_000_000_000i64..=1_000_000_000_000_000i64) {
            let q = Quantity::from_scaled(milli);
            prop_assert_eq!(Quantity::parse(&q.to_string()).unwrap(), q);
            prop_assert_eq!(q.to_scaled(), milli);
            let json = serde_json::to_string(&q).unwrap();
            prop_assert_eq!(serde_json::from_str::<Quantity>(&json).unwrap(), q);
        }

        /// More places than the type allows is refused, never rounded.
        #[test]
        fn extra_places_are_refused(whole in 0u32..1_000_000, frac in 1u32..10) {
            let text = format!("{whole}.{:03}{frac}", 0);
            prop_assert_eq!(Quantity::parse(&text), Err(DecimalError::TooPrecise(3)));
            let money = format!("{whole}.0{frac}{frac}");
            prop_assert_eq!(Money::parse(&money).is_err(), true);
        }

        /// Valuation rounds to the cent, at most half a cent away, and sums exactly.
        #[test]
        fn value_is_within_half_a_cent(milli in 0i64..1_000_000_000, e4 in 0i64..100_000_000) {
            let q = Quantity::from_scaled(milli);
            let u = UnitValue::from_scaled(e4);
            let exact = q.value() * u.value();
            let v = q.value_at(u);
            prop_assert!((v.value() - exact).abs() <= Decimal::new(5, 3));
            let twice = v.checked_add(v).unwrap();
            prop_assert_eq!(twice.to_scaled(), 2 * v.to_scaled());
        }
    }
}
