//! The people and places goods move between: warehouses, donors and recipients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::codes;
use super::record::Meta;
use super::validation::{opt_text, text, FieldErrors};

/// How to reach someone. Kept apart from the rest of a record so public reports can leave it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Contact {
    fn validate(&mut self, e: &mut FieldErrors) {
        self.person = opt_text(e, "contact.person", self.person.as_deref(), 100);
        self.phone = opt_text(e, "contact.phone", self.phone.as_deref(), 32);
        if let Some(p) = &self.phone {
            if !p.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
                e.add("contact.phone", "may hold only digits, spaces and + - ( )");
            }
        }
        self.email = opt_text(e, "contact.email", self.email.as_deref(), 254);
        if let Some(m) = &self.email {
            if !m.contains('@') || m.starts_with('@') || m.ends_with('@') {
                e.add("contact.email", "is not an e-mail address");
            }
        }
        self.address = opt_text(e, "contact.address", self.address.as_deref(), 300);
    }
}

fn region(e: &mut FieldErrors, field: &str, value: &str) -> String {
    e.check(field, codes::region_code(value))
        .unwrap_or_else(|| value.to_string())
}

// ---------------------------------------------------------------- warehouses

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarehouseInput {
    #[schema(example = "曲阜市防疫物资临时仓库")]
    pub name: String,
    #[serde(default)]
    pub address: Option<String>,
    /// 6-digit administrative division code.
    #[schema(example = "370881")]
    pub region_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Warehouse {
    #[serde(flatten)]
    pub meta: Meta,
    pub name: String,
    pub address: Option<String>,
    pub region_code: String,
}

impl WarehouseInput {
    pub fn validate(mut self) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        self.name = text(&mut e, "name", &self.name, 200);
        self.address = opt_text(&mut e, "address", self.address.as_deref(), 300);
        self.region_code = region(&mut e, "region_code", &self.region_code);
        e.finish(|| self)
    }
}

impl Warehouse {
    pub fn new(meta: Meta, i: WarehouseInput) -> Self {
        Self {
            meta,
            name: i.name,
            address: i.address,
            region_code: i.region_code,
        }
    }
    pub fn to_input(&self) -> WarehouseInput {
        WarehouseInput {
            name: self.name.clone(),
            address: self.address.clone(),
            region_code: self.region_code.clone(),
        }
    }
}

// ---------------------------------------------------------------- donors

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DonorKind {
    Enterprise,
    Individual,
    Organisation,
    Government,
    Anonymous,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DonorInput {
    #[schema(example = "大众报业集团工作组")]
    pub name: String,
    pub kind: DonorKind,
    #[serde(default)]
    pub contact: Contact,
    #[serde(default)]
    #[schema(example = "370102")]
    pub region_code: Option<String>,
    /// Unified social credit code (统一社会信用代码), check character included.
    #[serde(default)]
    pub credit_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Donor {
    #[serde(flatten)]
    pub meta: Meta,
    pub name: String,
    pub kind: DonorKind,
    pub contact: Contact,
    pub region_code: Option<String>,
    pub credit_code: Option<String>,
}

impl DonorInput {
    pub fn validate(mut self) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        self.name = text(&mut e, "name", &self.name, 200);
        self.contact.validate(&mut e);
        self.region_code = opt_text(&mut e, "region_code", self.region_code.as_deref(), 6)
            .map(|r| region(&mut e, "region_code", &r));
        self.credit_code = opt_text(&mut e, "credit_code", self.credit_code.as_deref(), 18)
            .map(|c| e.check("credit_code", codes::credit_code(&c)).unwrap_or(c));
        if self.credit_code.is_some()
            && matches!(self.kind, DonorKind::Individual | DonorKind::Anonymous)
        {
            e.add(
                "credit_code",
                "only enterprises, organisations and government bodies have one",
            );
        }
        e.finish(|| self)
    }
}

impl Donor {
    pub fn new(meta: Meta, i: DonorInput) -> Self {
        Self {
            meta,
            name: i.name,
            kind: i.kind,
            contact: i.contact,
            region_code: i.region_code,
            credit_code: i.credit_code,
        }
    }
    pub fn to_input(&self) -> DonorInput {
        DonorInput {
            name: self.name.clone(),
            kind: self.kind,
            contact: self.contact.clone(),
            region_code: self.region_code.clone(),
            credit_code: self.credit_code.clone(),
        }
    }
}

// ---------------------------------------------------------------- recipients

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    Enterprise,
    Project,
    Village,
    Community,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientInput {
    #[schema(example = "曲阜瑞翔电子有限公司")]
    pub name: String,
    pub kind: RecipientKind,
    /// 6-digit administrative division code of where the goods are used.
    #[schema(example = "370881")]
    pub region_code: String,
    #[serde(default)]
    pub contact: Contact,
    /// People served (workers, villagers, residents), when known.
    #[serde(default)]
    pub headcount: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Recipient {
    #[serde(flatten)]
    pub meta: Meta,
    pub name: String,
    pub kind: RecipientKind,
    pub region_code: String,
    pub contact: Contact,
    pub headcount: Option<u32>,
}

impl RecipientInput {
    pub fn validate(mut self) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        self.name = text(&mut e, "name", &self.name, 200);
        self.region_code = region(&mut e, "region_code", &self.region_code);
        self.contact.validate(&mut e);
        if self.headcount == Some(0) {
            e.add("headcount", "must be at least 1 when given");
        }
        e.finish(|| self)
    }
}

impl Recipient {
    pub fn new(meta: Meta, i: RecipientInput) -> Self {
        Self {
            meta,
            name: i.name,
            kind: i.kind,
            region_code: i.region_code,
            contact: i.contact,
            headcount: i.headcount,
        }
    }
    pub fn to_input(&self) -> RecipientInput {
        RecipientInput {
            name: self.name.clone(),
            kind: self.kind,
            region_code: self.region_code.clone(),
            contact: self.contact.clone(),
            headcount: self.headcount,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn donor_credit_code_rules() {
        let mut d = DonorInput {
            name: "济宁某企业".into(),
            kind: DonorKind::Enterprise,
            contact: Contact::default(),
            region_code: Some("370800".into()),
            credit_code: Some("91350100m000100y43".into()),
        };
        assert_eq!(
            d.clone().validate().unwrap().credit_code.as_deref(),
            Some("91350100M000100Y43")
        );
        d.kind = DonorKind::Individual;
        assert_eq!(d.clone().validate().unwrap_err().0[0].field, "credit_code");
        d.kind = DonorKind::Enterprise;
        d.credit_code = Some("91350100M000100Y44".into());
        assert_eq!(d.validate().unwrap_err().0[0].field, "credit_code");
    }

    #[test]
    fn recipient_needs_a_real_region() {
        let r = RecipientInput {
            name: "鲁城街道社区".into(),
            kind: RecipientKind::Community,
            region_code: "000000".into(),
            contact: Contact {
                email: Some("nobody".into()),
                ..Default::default()
            },
            headcount: Some(0),
        };
        let fields: Vec<_> = r
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["region_code", "contact.email", "headcount"]);
    }
}
