//! Who may do what. The permission matrix in docs/permissions.md is this file's `permits`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, tokens, warehouses and the item catalogue.
    Admin,
    /// Manages donors, recipients and pledges.
    Staff,
    /// Posts receipts and shipments at the warehouses they are assigned to.
    Clerk,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Staff, Role::Clerk, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Clerk => "clerk",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role '{s}': use admin, staff, clerk or auditor"))
    }
}

/// Everything the API lets someone do, at the granularity the matrix is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Items, units, values; warehouses, donors, recipients (clerks see only their warehouses).
    ReadMasterData,
    ManageCatalog,
    ManageWarehouses,
    ManageParties,
    ManageUsers,
    ReadAudit,
    /// Stock, movements, documents, lots (clerks: only at their warehouses).
    ReadLedger,
    /// Pledges: create and cancel.
    ManagePledges,
    /// Receipts, shipments, transfers, adjustments, stock counts and reversals
    /// (clerks: only at their warehouses).
    PostStock,
    /// Put lots on hold and release them (a recall).
    HoldLots,
    /// The ledger's integrity check and the journal export.
    CheckLedger,
    /// Auditor reports (stock, cards, statements, summaries, roll-forward, disclosure).
    ReadReports,
    /// Close periods and sign them off.
    ClosePeriods,
}

/// The permission matrix. Object-level scope (a clerk's warehouses) is `Principal::may_see_warehouse`.
pub fn permits(role: Role, action: Action) -> bool {
    use Action::*;
    match action {
        ReadMasterData => true,
        ManageCatalog | ManageWarehouses | ManageUsers => role == Role::Admin,
        ManageParties => matches!(role, Role::Admin | Role::Staff),
        ReadAudit | CheckLedger | ClosePeriods => matches!(role, Role::Admin | Role::Auditor),
        ReadReports => matches!(role, Role::Admin | Role::Auditor | Role::Staff),
        ReadLedger => true,
        ManagePledges | HoldLots => matches!(role, Role::Admin | Role::Staff),
        PostStock => matches!(role, Role::Admin | Role::Clerk),
    }
}

/// The authenticated caller of a request, or the operator at the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Principal {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    /// The warehouses a clerk acts at; empty for other roles.
    pub warehouses: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {role} may not {what}")]
pub struct Forbidden {
    pub role: Role,
    pub what: String,
}

impl Principal {
    /// The actor recorded for changes made with the command-line tool, without a server.
    pub fn operator() -> Self {
        Self {
            user_id: Uuid::nil(),
            name: "operator (command line)".into(),
            role: Role::Admin,
            warehouses: vec![],
        }
    }

    pub fn require(&self, action: Action) -> Result<(), Forbidden> {
        if permits(self.role, action) {
            Ok(())
        } else {
            Err(Forbidden {
                role: self.role,
                what: format!("{action:?}"),
            })
        }
    }

    pub fn may_see_warehouse(&self, warehouse: Uuid) -> bool {
        self.role != Role::Clerk || self.warehouses.contains(&warehouse)
    }

    pub fn require_warehouse(&self, warehouse: Uuid) -> Result<(), Forbidden> {
        if self.may_see_warehouse(warehouse) {
            Ok(())
        } else {
            Err(Forbidden {
                role: self.role,
                what: format!("act at warehouse {warehouse}, which is not one of theirs"),
            })
        }
    }
}

/// Bearer tokens: `rl_` and 256 random bits in hex. Only the SHA-256 of a token is stored,
/// so a leaked database does not leak working tokens; a fast hash suffices because the
/// secret has full entropy (no dictionary to attack).
pub mod token {
    use super::*;

    pub const PREFIX: &str = "rl_";

    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        format!("{PREFIX}{}", hex::encode(bytes))
    }

    pub fn hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    /// A short, non-secret handle shown in token lists so people can tell tokens apart.
    pub fn hint(token: &str) -> String {
        token.chars().take(PREFIX.len() + 6).collect()
    }

    pub fn looks_valid(token: &str) -> bool {
        token.len() == PREFIX.len() + 64
            && token.starts_with(PREFIX)
            && token[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_is_least_privilege() {
        for role in Role::ALL {
            assert!(permits(role, Action::ReadMasterData));
            assert_eq!(permits(role, Action::ManageUsers), role == Role::Admin);
        }
        assert!(permits(Role::Staff, Action::ManageParties));
        assert!(!permits(Role::Clerk, Action::ManageParties));
        assert!(!permits(Role::Auditor, Action::ManageParties));
        assert!(permits(Role::Auditor, Action::ReadAudit));
        assert!(!permits(Role::Staff, Action::ReadAudit));
        assert!(permits(Role::Clerk, Action::PostStock));
        assert!(!permits(Role::Staff, Action::PostStock));
        assert!(!permits(Role::Auditor, Action::PostStock));
        assert!(!permits(Role::Clerk, Action::ManagePledges));
    }

    #[test]
    fn clerks_are_scoped() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let clerk = Principal {
            user_id: Uuid::now_v7(),
            name: "仓管员".into(),
            role: Role::Clerk,
            warehouses: vec![a],
        };
        assert!(clerk.require_warehouse(a).is_ok());
        assert!(clerk.require_warehouse(b).is_err());
        let auditor = Principal {
            role: Role::Auditor,
            warehouses: vec![],
            ..clerk
        };
        assert!(auditor.require_warehouse(b).is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t1 = token::generate();
        let t2 = token::generate();
        assert_ne!(t1, t2);
        assert!(token::looks_valid(&t1));
        assert!(!token::looks_valid("rl_xyz"));
        assert_eq!(token::hash(&t1).len(), 64);
        assert_ne!(token::hash(&t1), token::hash(&t2));
    }
}

/// A person who uses the API. Users are deactivated (archived), never deleted, because the
/// audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    #[serde(flatten)]
    pub meta: crate::domain::record::Meta,
    pub name: String,
    pub role: Role,
    /// The warehouses a clerk acts at.
    pub warehouses: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    #[schema(example = "wang.clerk")]
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub warehouses: Vec<Uuid>,
}

impl UserInput {
    pub fn validate(mut self) -> Result<Self, crate::domain::validation::FieldErrors> {
        let mut e = crate::domain::validation::FieldErrors::new();
        self.name = crate::domain::validation::text(&mut e, "name", &self.name, 64);
        if self
            .name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            e.add("name", "must not contain spaces");
        }
        self.warehouses.sort();
        self.warehouses.dedup();
        match self.role {
            Role::Clerk if self.warehouses.is_empty() => {
                e.add("warehouses", "a clerk needs at least one warehouse")
            }
            Role::Clerk => {}
            _ if !self.warehouses.is_empty() => {
                e.add("warehouses", "only clerks are assigned to warehouses")
            }
            _ => {}
        }
        e.finish(|| self)
    }
}

impl User {
    pub fn to_input(&self) -> UserInput {
        UserInput {
            name: self.name.clone(),
            role: self.role,
            warehouses: self.warehouses.clone(),
        }
    }

    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.meta.id,
            name: self.name.clone(),
            role: self.role,
            warehouses: self.warehouses.clone(),
        }
    }
}

/// A token as listed: never the secret, which is shown once when the token is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The first characters of the token, to tell tokens apart.
    pub hint: String,
    pub label: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}
