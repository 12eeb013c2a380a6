//! Master data tables: items and their value history, warehouses, donors, recipients.

use std::collections::HashMap;

use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{donors, item_values, items, recipients, warehouses};
use super::{enum_str, parse_enum, parse_json, parse_opt_ts, parse_ts, parse_uuid, to_json, ts};
use super::{group, DbConn};
use crate::domain::catalog::{Item, ItemValue};
use crate::domain::decimal::UnitValue;
use crate::domain::parties::{Donor, Recipient, Warehouse};
use crate::domain::record::Meta;
use crate::error::Result;

/// A page request: records after `after` (an id; v7 UUIDs sort by creation time), at most `limit`.
#[derive(Debug, Clone)]
pub struct Page {
    pub after: Option<Uuid>,
    pub limit: i64,
    pub include_archived: bool,
}

fn meta(
    id: &str,
    version: i64,
    created: &str,
    updated: &str,
    archived: Option<&str>,
) -> Result<Meta> {
    Ok(Meta {
        id: parse_uuid(id)?,
        version,
        created_at: parse_ts(created)?,
        updated_at: parse_ts(updated)?,
        archived_at: parse_opt_ts(archived)?,
    })
}

/// Generates the insert, update, get and get-many functions every master table has; the
/// tables differ only in their own columns and filters.
/// `get` answers from the writer's cache when it can (`store::group`).
macro_rules! master_table {
    ($table:ident, $row:ident, $domain:ty, $insert:ident, $update:ident, $get:ident, $get_many:ident, $cached:ident) => {
        pub fn $insert(conn: &mut DbConn, record: &$domain) -> Result<()> {
            super::batch::settle(conn)?;
            group::master_changing();
            let row = $row::from(record);
            group::wrote(on!(conn, |c| diesel::insert_into($table::table)
                .values(&row)
                .execute(c))?);
            Ok(())
        }

        /// Writes a new version; the caller has checked the version it replaces.
        pub fn $update(conn: &mut DbConn, record: &$domain) -> Result<()> {
            super::batch::settle(conn)?;
            group::master_changing();
            let row = $row::from(record);
            group::wrote(on!(conn, |c| diesel::update(
                $table::table.find(record.meta.id.to_string())
            )
            .set(&row)
            .execute(c))?);
            Ok(())
        }

        pub fn $get(conn: &mut DbConn, id: Uuid) -> Result<Option<$domain>> {
            if let Some(Some(hit)) = group::master(|m| m.$cached.get(&id).cloned()) {
                return Ok(Some(hit));
            }
            let key = id.to_string();
            let found = super::batch::aside(|| {
                on!(conn, |c| $table::table
                    .find(&key)
                    .select($row::as_select())
                    .get_result::<$row>(c)
                    .optional())
            })?
            .map(<$domain>::try_from)
            .transpose()?;
            if let Some(record) = &found {
                group::master(|m| group::keep(&mut m.$cached, id, record.clone()));
            }
            Ok(found)
        }

        /// The records with these ids that exist. One round trip on PostgreSQL (an `= ANY`
        /// list is one bind), where a report naming fifty parties one by one spent ~10 ms in
        /// round trips; on SQLite one cached point read each (an `IN` list is parsed afresh
        /// for every count).
        pub fn $get_many(conn: &mut DbConn, ids: &[Uuid]) -> Result<HashMap<Uuid, $domain>> {
            let mut out = HashMap::new();
            let mut missing = vec![];
            for id in ids {
                match group::master(|m| m.$cached.get(id).cloned()) {
                    Some(Some(hit)) => {
                        out.insert(*id, hit);
                    }
                    _ => missing.push(*id),
                }
            }
            if missing.is_empty() {
                return Ok(out);
            }
            match conn {
                DbConn::Postgres(c) => {
                    let rows: Vec<$row> = super::batch::aside(|| {
                        $table::table
                            .filter($table::id.eq_any(missing.iter().map(Uuid::to_string)))
                            .select($row::as_select())
                            .load(c)
                    })?;
                    for r in rows {
                        let record = <$domain>::try_from(r)?;
                        let id = record.meta.id;
                        group::master(|m| group::keep(&mut m.$cached, id, record.clone()));
                        out.insert(id, record);
                    }
                }
                DbConn::Sqlite(_) => {
                    for id in missing {
                        if out.contains_key(&id) {
                            continue;
                        }
                        if let Some(record) = $get(conn, id)? {
                            out.insert(id, record);
                        }
                    }
                }
            }
            Ok(out)
        }
    };
}

// ---------------------------------------------------------------- items

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = items, treat_none_as_null = true, treat_none_as_default_value = false)]
struct ItemRow {
    id: String,
    code: String,
    name: String,
    category: String,
    base_unit: String,
    units: String,
    attributes: String,
    tracks_lots: bool,
    tracks_expiry: bool,
    version: i64,
    created_at: String,
    updated_at: String,
    archived_at: Option<String>,
}

impl From<&Item> for ItemRow {
    fn from(i: &Item) -> Self {
        ItemRow {
            id: i.meta.id.to_string(),
            code: i.code.clone(),
            name: i.name.clone(),
            category: enum_str(&i.category),
            base_unit: i.base_unit.clone(),
            units: to_json(&i.units),
            attributes: to_json(&i.attributes),
            tracks_lots: i.tracks_lots,
            tracks_expiry: i.tracks_expiry,
            version: i.meta.version,
            created_at: ts(i.meta.created_at),
            updated_at: ts(i.meta.updated_at),
            archived_at: i.meta.archived_at.map(ts),
        }
    }
}

impl TryFrom<ItemRow> for Item {
    type Error = crate::error::Error;
    fn try_from(r: ItemRow) -> Result<Self> {
        Ok(Item {
            meta: meta(
                &r.id,
                r.version,
                &r.created_at,
                &r.updated_at,
                r.archived_at.as_deref(),
            )?,
            code: r.code,
            name: r.name,
            category: parse_enum(&r.category)?,
            base_unit: r.base_unit,
            units: parse_json(&r.units)?,
            attributes: parse_json(&r.attributes)?,
            tracks_lots: r.tracks_lots,
            tracks_expiry: r.tracks_expiry,
        })
    }
}

master_table!(
    items,
    ItemRow,
    Item,
    insert_item,
    update_item,
    get_item,
    get_items,
    items
);

#[derive(Debug, Default, Clone)]
pub struct ItemFilter {
    pub category: Option<String>,
    pub code: Option<String>,
    pub name_contains: Option<String>,
}

pub fn list_items(conn: &mut DbConn, f: &ItemFilter, page: &Page) -> Result<Vec<Item>> {
    let mut q = items::table.select(ItemRow::as_select()).into_boxed();
    if let Some(v) = &f.category {
        q = q.filter(items::category.eq(v.clone()));
    }
    if let Some(v) = &f.code {
        q = q.filter(items::code.eq(v.clone()));
    }
    if let Some(v) = &f.name_contains {
        q = q.filter(items::name.like(like_pattern(v)));
    }
    if !page.include_archived {
        q = q.filter(items::archived_at.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(items::id.gt(after.to_string()));
    }
    let rows: Vec<ItemRow> = q.order(items::id.asc()).limit(page.limit).load(conn)?;
    rows.into_iter().map(Item::try_from).collect()
}

pub fn item_code_taken(conn: &mut DbConn, code: &str, except: Option<Uuid>) -> Result<bool> {
    let mut q = items::table
        .filter(items::code.eq(code.to_string()))
        .select(items::id)
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(items::id.ne(id.to_string()));
    }
    Ok(q.get_result::<String>(conn).optional()?.is_some())
}

// ---------------------------------------------------------------- item values

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = item_values, treat_none_as_default_value = false)]
struct ItemValueRow {
    id: String,
    item_id: String,
    effective_from: String,
    unit_value_e4: i64,
    currency: String,
    basis: String,
    evidence: Option<String>,
    set_by: String,
    recorded_at: String,
}

impl TryFrom<ItemValueRow> for ItemValue {
    type Error = crate::error::Error;
    fn try_from(r: ItemValueRow) -> Result<Self> {
        Ok(ItemValue {
            id: parse_uuid(&r.id)?,
            item_id: parse_uuid(&r.item_id)?,
            effective_from: r
                .effective_from
                .parse()
                .map_err(|e| crate::error::Error::Internal(format!("bad date in database: {e}")))?,
            unit_value: UnitValue::from_scaled(r.unit_value_e4),
            currency: r.currency,
            basis: parse_enum(&r.basis)?,
            evidence: r.evidence,
            set_by: parse_uuid(&r.set_by)?,
            recorded_at: parse_ts(&r.recorded_at)?,
        })
    }
}

pub fn insert_item_value(conn: &mut DbConn, v: &ItemValue) -> Result<()> {
    super::batch::settle(conn)?;
    group::master_changing();
    diesel::insert_into(item_values::table)
        .values(ItemValueRow {
            id: v.id.to_string(),
            item_id: v.item_id.to_string(),
            effective_from: v.effective_from.to_string(),
            unit_value_e4: v.unit_value.to_scaled(),
            currency: v.currency.clone(),
            basis: enum_str(&v.basis),
            evidence: v.evidence.clone(),
            set_by: v.set_by.to_string(),
            recorded_at: ts(v.recorded_at),
        })
        .execute(conn)
        .map(group::wrote)?;
    Ok(())
}

/// An item's value history, newest effective date first (and, within a date, newest entry).
pub fn item_values(conn: &mut DbConn, item: Uuid) -> Result<Vec<ItemValue>> {
    Ok(value_histories(conn, &[item])?
        .remove(&item)
        .unwrap_or_default())
}

/// The value histories of some items, each newest first (an item without values has an
/// empty one). One round trip on PostgreSQL (an `= ANY` list is one bind); on SQLite one
/// cached read per item (an `IN` list is parsed afresh for every count).
pub fn value_histories(conn: &mut DbConn, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<ItemValue>>> {
    // The writer usually has them all (`store::group`): no round trip for an empty list.
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    super::batch::settle(conn)?;
    let order = (
        item_values::item_id,
        item_values::effective_from.desc(),
        item_values::recorded_at.desc(),
    );
    let rows: Vec<ItemValueRow> = match conn {
        DbConn::Postgres(c) => item_values::table
            .filter(item_values::item_id.eq_any(ids.iter().map(Uuid::to_string)))
            .select(ItemValueRow::as_select())
            .order(order)
            .load(c)?,
        DbConn::Sqlite(c) => {
            let mut rows = vec![];
            for id in ids {
                rows.extend(
                    item_values::table
                        .filter(item_values::item_id.eq(id.to_string()))
                        .select(ItemValueRow::as_select())
                        .order(order)
                        .load::<ItemValueRow>(c)?,
                );
            }
            rows
        }
    };
    let mut out: HashMap<Uuid, Vec<ItemValue>> = ids.iter().map(|id| (*id, vec![])).collect();
    for r in rows {
        let v = ItemValue::try_from(r)?;
        out.entry(v.item_id).or_default().push(v);
    }
    Ok(out)
}

// ---------------------------------------------------------------- warehouses

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = warehouses, treat_none_as_null = true, treat_none_as_default_value = false)]
struct WarehouseRow {
    id: String,
    name: String,
    address: Option<String>,
    region_code: String,
    version: i64,
    created_at: String,
    updated_at: String,
    archived_at: Option<String>,
}

impl From<&Warehouse> for WarehouseRow {
    fn from(w: &Warehouse) -> Self {
        WarehouseRow {
            id: w.meta.id.to_string(),
            name: w.name.clone(),
            address: w.address.clone(),
            region_code: w.region_code.clone(),
            version: w.meta.version,
            created_at: ts(w.meta.created_at),
            updated_at: ts(w.meta.updated_at),
            archived_at: w.meta.archived_at.map(ts),
        }
    }
}

impl TryFrom<WarehouseRow> for Warehouse {
    type Error = crate::error::Error;
    fn try_from(r: WarehouseRow) -> Result<Self> {
        Ok(Warehouse {
            meta: meta(
                &r.id,
                r.version,
                &r.created_at,
                &r.updated_at,
                r.archived_at.as_deref(),
            )?,
            name: r.name,
            address: r.address,
            region_code: r.region_code,
        })
    }
}

master_table!(
    warehouses,
    WarehouseRow,
    Warehouse,
    insert_warehouse,
    update_warehouse,
    get_warehouse,
    get_warehouses,
    warehouses
);

/// `only` limits the list to a clerk's warehouses.
pub fn list_warehouses(
    conn: &mut DbConn,
    region_prefix: Option<&str>,
    only: Option<&[Uuid]>,
    page: &Page,
) -> Result<Vec<Warehouse>> {
    let mut q = warehouses::table
        .select(WarehouseRow::as_select())
        .into_boxed();
    if let Some(p) = region_prefix {
        q = q.filter(warehouses::region_code.like(format!("{p}%")));
    }
    if let Some(ids) = only {
        q = q.filter(warehouses::id.eq_any(ids.iter().map(Uuid::to_string).collect::<Vec<_>>()));
    }
    if !page.include_archived {
        q = q.filter(warehouses::archived_at.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(warehouses::id.gt(after.to_string()));
    }
    let rows: Vec<WarehouseRow> = q.order(warehouses::id.asc()).limit(page.limit).load(conn)?;
    rows.into_iter().map(Warehouse::try_from).collect()
}

// ---------------------------------------------------------------- donors

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = donors, treat_none_as_null = true, treat_none_as_default_value = false)]
struct DonorRow {
    id: String,
    name: String,
    kind: String,
    contact: String,
    region_code: Option<String>,
    credit_code: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
    archived_at: Option<String>,
}

impl From<&Donor> for DonorRow {
    fn from(d: &Donor) -> Self {
        DonorRow {
            id: d.meta.id.to_string(),
            name: d.name.clone(),
            kind: enum_str(&d.kind),
            contact: to_json(&d.contact),
            region_code: d.region_code.clone(),
            credit_code: d.credit_code.clone(),
            version: d.meta.version,
            created_at: ts(d.meta.created_at),
            updated_at: ts(d.meta.updated_at),
            archived_at: d.meta.archived_at.map(ts),
        }
    }
}

impl TryFrom<DonorRow> for Donor {
    type Error = crate::error::Error;
    fn try_from(r: DonorRow) -> Result<Self> {
        Ok(Donor {
            meta: meta(
                &r.id,
                r.version,
                &r.created_at,
                &r.updated_at,
                r.archived_at.as_deref(),
            )?,
            name: r.name,
            kind: parse_enum(&r.kind)?,
            contact: parse_json(&r.contact)?,
            region_code: r.region_code,
            credit_code: r.credit_code,
        })
    }
}

master_table!(
    donors,
    DonorRow,
    Donor,
    insert_donor,
    update_donor,
    get_donor,
    get_donors,
    donors
);

#[derive(Debug, Default, Clone)]
pub struct PartyFilter {
    pub kind: Option<String>,
    pub region_prefix: Option<String>,
    pub name_contains: Option<String>,
}

pub fn list_donors(conn: &mut DbConn, f: &PartyFilter, page: &Page) -> Result<Vec<Donor>> {
    let mut q = donors::table.select(DonorRow::as_select()).into_boxed();
    if let Some(v) = &f.kind {
        q = q.filter(donors::kind.eq(v.clone()));
    }
    if let Some(v) = &f.region_prefix {
        q = q.filter(donors::region_code.like(format!("{v}%")));
    }
    if let Some(v) = &f.name_contains {
        q = q.filter(donors::name.like(like_pattern(v)));
    }
    if !page.include_archived {
        q = q.filter(donors::archived_at.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(donors::id.gt(after.to_string()));
    }
    let rows: Vec<DonorRow> = q.order(donors::id.asc()).limit(page.limit).load(conn)?;
    rows.into_iter().map(Donor::try_from).collect()
}

pub fn credit_code_taken(conn: &mut DbConn, code: &str, except: Option<Uuid>) -> Result<bool> {
    let mut q = donors::table
        .filter(donors::credit_code.eq(code.to_string()))
        .select(donors::id)
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(donors::id.ne(id.to_string()));
    }
    Ok(q.get_result::<String>(conn).optional()?.is_some())
}

// ---------------------------------------------------------------- recipients

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = recipients, treat_none_as_null = true, treat_none_as_default_value = false)]
struct RecipientRow {
    id: String,
    name: String,
    kind: String,
    region_code: String,
    contact: String,
    headcount: Option<i32>,
    version: i64,
    created_at: String,
    updated_at: String,
    archived_at: Option<String>,
}

impl From<&Recipient> for RecipientRow {
    fn from(r: &Recipient) -> Self {
        RecipientRow {
            id: r.meta.id.to_string(),
            name: r.name.clone(),
            kind: enum_str(&r.kind),
            region_code: r.region_code.clone(),
            contact: to_json(&r.contact),
            headcount: r.headcount.map(|h| h.min(i32::MAX as u32) as i32),
            version: r.meta.version,
            created_at: ts(r.meta.created_at),
            updated_at: ts(r.meta.updated_at),
            archived_at: r.meta.archived_at.map(ts),
        }
    }
}

impl TryFrom<RecipientRow> for Recipient {
    type Error = crate::error::Error;
    fn try_from(r: RecipientRow) -> Result<Self> {
        Ok(Recipient {
            meta: meta(
                &r.id,
                r.version,
                &r.created_at,
                &r.updated_at,
                r.archived_at.as_deref(),
            )?,
            name: r.name,
            kind: parse_enum(&r.kind)?,
            region_code: r.region_code,
            contact: parse_json(&r.contact)?,
            headcount: r.headcount.map(|h| h.max(0) as u32),
        })
    }
}

master_table!(
    recipients,
    RecipientRow,
    Recipient,
    insert_recipient,
    update_recipient,
    get_recipient,
    get_recipients,
    recipients
);

pub fn list_recipients(conn: &mut DbConn, f: &PartyFilter, page: &Page) -> Result<Vec<Recipient>> {
    let mut q = recipients::table
        .select(RecipientRow::as_select())
        .into_boxed();
    if let Some(v) = &f.kind {
        q = q.filter(recipients::kind.eq(v.clone()));
    }
    if let Some(v) = &f.region_prefix {
        q = q.filter(recipients::region_code.like(format!("{v}%")));
    }
    if let Some(v) = &f.name_contains {
        q = q.filter(recipients::name.like(like_pattern(v)));
    }
    if !page.include_archived {
        q = q.filter(recipients::archived_at.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(recipients::id.gt(after.to_string()));
    }
    let rows: Vec<RecipientRow> = q.order(recipients::id.asc()).limit(page.limit).load(conn)?;
    rows.into_iter().map(Recipient::try_from).collect()
}

/// `%text%` with LIKE's own wildcards taken literally (both backends treat `\` as the
/// default escape only on PostgreSQL, so they are dropped instead of escaped).
fn like_pattern(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !matches!(c, '%' | '_' | '\\'))
        .collect();
    format!("%{clean}%")
}
