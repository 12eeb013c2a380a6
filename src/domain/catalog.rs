//! The catalogue: items, their units and packs, and their dated estimated values.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::decimal::{Quantity, UnitValue};
use super::record::Meta;
use super::validation::{opt_text, text, FieldErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Mask,
    Disinfectant,
    Thermometer,
    Protective,
    Other,
}

/// Base units an item can be counted in. Other units are defined per item as multiples.
pub const BASE_UNITS: [&str; 9] = [
    "piece", "pair", "set", "kg", "g", "litre", "ml", "bottle", "box",
];

/// An alternative unit or pack: `factor` base units make one (box = 50 pieces; jin = 0.5 kg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitDef {
    pub name: String,
    #[schema(value_type = String, example = "0.5")]
    #[serde(with = "rust_decimal::serde::str")]
    pub factor: Decimal,
}

/// Facts about a relief good that auditors and recipients ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    /// Product standard, e.g. "GB 19083-2010" (medical protective masks) or "GB 2626-2019".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_standard: Option<String>,
    /// Alcohol concentration in percent by volume, as a decimal string ("75").
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    #[schema(value_type = Option<String>, example = "75")]
    pub alcohol_concentration: Option<Decimal>,
    /// Medical device or disinfectant registration / filing number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_number: Option<String>,
}

/// What a client sends to create an item, and what a PATCH is merged into.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    #[schema(example = "MASK-KN95")]
    pub code: String,
    #[schema(example = "KN95 口罩")]
    pub name: String,
    pub category: Category,
    #[schema(example = "piece")]
    pub base_unit: String,
    #[serde(default)]
    pub units: Vec<UnitDef>,
    #[serde(default)]
    pub attributes: Attributes,
    /// Receipts must name a lot number for this item.
    #[serde(default)]
    pub tracks_lots: bool,
    /// Receipts must give an expiry date for this item.
    #[serde(default)]
    pub tracks_expiry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Item {
    #[serde(flatten)]
    pub meta: Meta,
    pub code: String,
    pub name: String,
    pub category: Category,
    pub base_unit: String,
    pub units: Vec<UnitDef>,
    pub attributes: Attributes,
    pub tracks_lots: bool,
    pub tracks_expiry: bool,
}

impl ItemInput {
    /// Checks every field; on success the input is normalised (trimmed, lower-case units).
    pub fn validate(mut self) -> Result<ItemInput, FieldErrors> {
        let mut e = FieldErrors::new();
        self.code = text(&mut e, "code", &self.code, 64);
        if self.code.chars().any(char::is_whitespace) {
            e.add("code", "must not contain spaces");
        }
        self.name = text(&mut e, "name", &self.name, 200);
        self.base_unit = self.base_unit.trim().to_lowercase();
        if !BASE_UNITS.contains(&self.base_unit.as_str()) {
            e.add(
                "base_unit",
                format!("must be one of {}", BASE_UNITS.join(", ")),
            );
        }
        let mut seen = vec![self.base_unit.clone()];
        for (i, u) in self.units.iter_mut().enumerate() {
            u.name = text(&mut e, &format!("units[{i}].name"), &u.name, 32).to_lowercase();
            if seen.contains(&u.name) {
                e.add(format!("units[{i}].name"), "is defined twice");
            }
            seen.push(u.name.clone());
            u.factor = u.factor.normalize();
            if u.factor <= Decimal::ZERO {
                e.add(format!("units[{i}].factor"), "must be greater than zero");
            } else if u.factor.scale() > 6 {
                e.add(
                    format!("units[{i}].factor"),
                    "has more than 6 decimal places",
                );
            }
        }
        let a = &mut self.attributes;
        a.product_standard = opt_text(
            &mut e,
            "attributes.product_standard",
            a.product_standard.as_deref(),
            64,
        );
        a.registration_number = opt_text(
            &mut e,
            "attributes.registration_number",
            a.registration_number.as_deref(),
            64,
        );
        if let Some(c) = a.alcohol_concentration {
            if c <= Decimal::ZERO || c > Decimal::ONE_HUNDRED {
                e.add(
                    "attributes.alcohol_concentration",
                    "must be a percentage above 0 and at most 100",
                );
            }
        }
        if self.tracks_expiry && !self.tracks_lots {
            e.add(
                "tracks_expiry",
                "an item that tracks expiry must also track lots",
            );
        }
        e.finish(|| self)
    }
}

impl Item {
    pub fn new(meta: Meta, input: ItemInput) -> Self {
        Self {
            meta,
            code: input.code,
            name: input.name,
            category: input.category,
            base_unit: input.base_unit,
            units: input.units,
            attributes: input.attributes,
            tracks_lots: input.tracks_lots,
            tracks_expiry: input.tracks_expiry,
        }
    }

    pub fn to_input(&self) -> ItemInput {
        ItemInput {
            code: self.code.clone(),
            name: self.name.clone(),
            category: self.category,
            base_unit: self.base_unit.clone(),
            units: self.units.clone(),
            attributes: self.attributes.clone(),
            tracks_lots: self.tracks_lots,
            tracks_expiry: self.tracks_expiry,
        }
    }

    /// Converts an amount in one of this item's units into base units, exactly.
    pub fn to_base(&self, amount: Decimal, unit: &str) -> Result<Quantity, String> {
        let unit = unit.trim().to_lowercase();
        let factor = if unit == self.base_unit {
            Decimal::ONE
        } else {
            self.units
                .iter()
                .find(|u| u.name == unit)
                .map(|u| u.factor)
                .ok_or_else(|| format!("unit '{unit}' is not defined for item {}", self.code))?
        };
        Quantity::from_units(amount, factor).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueBasis {
    MarketQuote,
    DonorDeclared,
    ReferencePrice,
    Invoice,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemValueInput {
    /// First business day on which this value applies.
    pub effective_from: NaiveDate,
    /// Estimated value of one base unit, up to 4 decimal places.
    #[schema(value_type = String, example = "0.45")]
    pub unit_value: String,
    #[serde(default)]
    #[schema(example = "CNY")]
    pub currency: Option<String>,
    pub basis: ValueBasis,
    /// The evidence: a quote's source, an invoice number.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// One entry of an item's value history. Entries are only ever added: the value in effect on
/// a date is the latest entry whose `effective_from` is on or before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ItemValue {
    pub id: Uuid,
    pub item_id: Uuid,
    pub effective_from: NaiveDate,
    #[schema(value_type = String, example = "0.45")]
    pub unit_value: UnitValue,
    pub currency: String,
    pub basis: ValueBasis,
    pub evidence: Option<String>,
    pub set_by: Uuid,
    pub recorded_at: DateTime<Utc>,
}

/// The entry of a value history in effect on `on`: the latest dated on or before it, and of
/// those the latest recorded (a correction entered for the same date wins).
pub fn value_in_effect(history: &[ItemValue], on: NaiveDate) -> Option<&ItemValue> {
    history
        .iter()
        .filter(|v| v.effective_from <= on)
        .max_by_key(|v| (v.effective_from, v.recorded_at))
}

impl ItemValueInput {
    pub fn validate(
        self,
        item_id: Uuid,
        set_by: Uuid,
        now: DateTime<Utc>,
    ) -> Result<ItemValue, FieldErrors> {
        let mut e = FieldErrors::new();
        let unit_value = e.check(
            "unit_value",
            UnitValue::parse_non_negative(&self.unit_value),
        );
        let currency = self
            .currency
            .as_deref()
            .map(str::trim)
            .unwrap_or("CNY")
            .to_string();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            e.add("currency", "must be a 3-letter ISO 4217 code such as CNY");
        }
        let evidence = opt_text(&mut e, "evidence", self.evidence.as_deref(), 500);
        e.finish(|| ItemValue {
            id: Uuid::now_v7(),
            item_id,
            effective_from: self.effective_from,
            unit_value: unit_value.expect("checked"),
            currency,
            basis: self.basis,
            evidence,
            set_by,
            recorded_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alcohol() -> ItemInput {
        serde_json::from_value(serde_json::json!({
            "code": "ALC-75", "name": "75% 医用酒精", "category": "disinfectant",
            "base_unit": "kg",
            "units": [{"name": "jin", "factor": "0.5"}, {"name": "tonne", "factor": "1000"}],
            "attributes": {"alcohol_concentration": "75"}
        }))
        .unwrap()
    }

    #[test]
    fn converts_jin_and_tonnes_to_kg() {
        let item = Item::new(Meta::new(Utc::now()), alcohol().validate().unwrap());
        assert_eq!(
            item.to_base(Decimal::from(2300), "jin")
                .unwrap()
                .to_string(),
            "1150"
        );
        assert_eq!(
            item.to_base(Decimal::from(33), "Tonne")
                .unwrap()
                .to_string(),
            "33000"
        );
        assert_eq!(
            item.to_base(Decimal::new(15, 1), "kg").unwrap().to_string(),
            "1.5"
        );
        assert!(item.to_base(Decimal::ONE, "box").is_err());
    }

    #[test]
    fn reports_every_bad_field() {
        let mut bad = alcohol();
        bad.code = " ".into();
        bad.base_unit = "barrel".into();
        bad.units[1].name = "jin".into();
        bad.units[0].factor = Decimal::ZERO;
        bad.attributes.alcohol_concentration = Some(Decimal::from(120));
        bad.tracks_expiry = true;
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "code",
                "base_unit",
                "units[0].factor",
                "units[1].name",
                "attributes.alcohol_concentration",
                "tracks_expiry"
            ]
        );
    }

    #[test]
    fn the_value_in_effect_is_the_latest_dated_then_the_latest_recorded() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let entry = |from: &str, at: &str, v: &str| ItemValue {
            id: Uuid::now_v7(),
            item_id: Uuid::nil(),
            effective_from: d(from),
            unit_value: UnitValue::parse(v).unwrap(),
            currency: "CNY".into(),
            basis: ValueBasis::MarketQuote,
            evidence: None,
            set_by: Uuid::nil(),
            recorded_at: t(at),
        };
        let history = [
            entry("2020-02-01", "2020-02-01T08:00:00Z", "0.45"),
            entry("2020-02-10", "2020-02-09T08:00:00Z", "0.60"),
            // The same date entered again later: a correction.
            entry("2020-02-10", "2020-02-11T08:00:00Z", "0.55"),
            entry("2020-03-01", "2020-02-12T08:00:00Z", "0.40"),
        ];
        let on = |day: &str| value_in_effect(&history, d(day)).map(|v| v.unit_value.to_string());
        assert_eq!(on("2020-01-31"), None);
        assert_eq!(on("2020-02-01").as_deref(), Some("0.45"));
        assert_eq!(on("2020-02-09").as_deref(), Some("0.45"));
        assert_eq!(on("2020-02-10").as_deref(), Some("0.55"));
        assert_eq!(on("2020-02-29").as_deref(), Some("0.55"));
        assert_eq!(on("2020-03-01").as_deref(), Some("0.4"));
    }
}
