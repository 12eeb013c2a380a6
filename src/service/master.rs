//! Create, read, change and archive master records (items, warehouses, donors, recipients)
//! with one set of rules: validated input, If-Match on change, an audit event per write,
//! archive instead of delete.

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::{check_if_match, Ctx};
use crate::domain::access::{Action, Principal};
use crate::domain::catalog::{Item, ItemInput};
use crate::domain::parties::{
    Donor, DonorInput, Recipient, RecipientInput, Warehouse, WarehouseInput,
};
use crate::domain::record::Meta;
use crate::domain::validation::FieldErrors;
use crate::error::{Error, Result};
use crate::store::{master as db, Db, DbConn};

/// What a kind of master record brings to the shared operations.
pub trait MasterRecord: Serialize + Clone + Send + 'static {
    /// Name in audit events and errors (`donor`).
    const ENTITY: &'static str;
    /// Who may create, change and archive it.
    const MANAGE: Action;
    type Input: Serialize + DeserializeOwned + Send + 'static;

    fn validate(input: Self::Input) -> Result<Self::Input, FieldErrors>;
    fn build(meta: Meta, input: Self::Input) -> Self;
    fn to_input(&self) -> Self::Input;
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;

    fn load(conn: &mut DbConn, id: Uuid) -> Result<Option<Self>>;
    fn insert(conn: &mut DbConn, record: &Self) -> Result<()>;
    fn update(conn: &mut DbConn, record: &Self) -> Result<()>;

    /// Uniqueness rules, checked inside the write transaction.
    fn check_unique(_conn: &mut DbConn, _record: &Self) -> Result<()> {
        Ok(())
    }

    /// Object-level read scope (clerks see only their own warehouses).
    fn check_visible(&self, _actor: &Principal) -> Result<()> {
        Ok(())
    }
}

pub async fn create<R: MasterRecord>(db: &Db, ctx: &Ctx, input: R::Input) -> Result<R> {
    ctx.actor.require(R::MANAGE)?;
    let input = R::validate(input)?;
    let record = R::build(Meta::new(ctx.now), input);
    let ctx = ctx.clone();
    db.write(move |conn| {
        R::check_unique(conn, &record)?;
        R::insert(conn, &record)?;
        ctx.audit(
            conn,
            &format!("{}.create", R::ENTITY),
            R::ENTITY,
            record.meta().id,
            None,
            Some(&record),
        )?;
        Ok(record.clone())
    })
    .await
}

pub fn get<R: MasterRecord>(db: &Db, actor: &Principal, id: Uuid) -> Result<R> {
    actor.require(Action::ReadMasterData)?;
    let record = db
        .read(|conn| R::load(conn, id))?
        .ok_or_else(|| Error::not_found(R::ENTITY, id))?;
    record.check_visible(actor)?;
    Ok(record)
}

/// Applies a JSON merge patch: the current record's input form, patched, must pass the same
/// validation as a new record.
pub async fn patch<R: MasterRecord>(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    if_match: Option<&str>,
    patch: serde_json::Value,
) -> Result<R> {
    ctx.actor.require(R::MANAGE)?;
    let (ctx, if_match) = (ctx.clone(), if_match.map(str::to_string));
    db.write(move |conn| {
        let current = R::load(conn, id)?.ok_or_else(|| Error::not_found(R::ENTITY, id))?;
        check_if_match(if_match.as_deref(), &current.meta().etag())?;
        if current.meta().archived_at.is_some() {
            return Err(Error::conflict(
                "id",
                format!("{} {id} is archived", R::ENTITY),
            ));
        }
        let input = R::validate(super::patched(&current.to_input(), &patch)?)?;
        let updated = R::build(current.meta().next(ctx.now), input);
        R::check_unique(conn, &updated)?;
        R::update(conn, &updated)?;
        ctx.audit(
            conn,
            &format!("{}.update", R::ENTITY),
            R::ENTITY,
            id,
            Some(&current),
            Some(&updated),
        )?;
        Ok(updated)
    })
    .await
}

/// Archives a record: it stays, with everything that refers to it, but takes no new use.
/// If-Match is optional here: archiving twice is harmless and refused with 409.
pub async fn archive<R: MasterRecord>(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    if_match: Option<&str>,
) -> Result<R> {
    ctx.actor.require(R::MANAGE)?;
    let (ctx, if_match) = (ctx.clone(), if_match.map(str::to_string));
    db.write(move |conn| {
        let current = R::load(conn, id)?.ok_or_else(|| Error::not_found(R::ENTITY, id))?;
        if if_match.is_some() {
            check_if_match(if_match.as_deref(), &current.meta().etag())?;
        }
        if current.meta().archived_at.is_some() {
            return Err(Error::conflict(
                "id",
                format!("{} {id} is already archived", R::ENTITY),
            ));
        }
        let mut archived = current.clone();
        *archived.meta_mut() = current.meta().next(ctx.now);
        archived.meta_mut().archived_at = Some(ctx.now);
        R::update(conn, &archived)?;
        ctx.audit(
            conn,
            &format!("{}.archive", R::ENTITY),
            R::ENTITY,
            id,
            Some(&current),
            Some(&archived),
        )?;
        Ok(archived)
    })
    .await
}

macro_rules! impl_master {
    ($t:ident, $input:ident, $entity:literal, $manage:expr, $get:path, $insert:path, $update:path) => {
        impl MasterRecord for $t {
            const ENTITY: &'static str = $entity;
            const MANAGE: Action = $manage;
            type Input = $input;
            fn validate(input: $input) -> Result<$input, FieldErrors> {
                input.validate()
            }
            fn build(meta: Meta, input: $input) -> Self {
                <$t>::new(meta, input)
            }
            fn to_input(&self) -> $input {
                <$t>::to_input(self)
            }
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            fn load(conn: &mut DbConn, id: Uuid) -> Result<Option<Self>> {
                $get(conn, id)
            }
            fn insert(conn: &mut DbConn, r: &Self) -> Result<()> {
                $insert(conn, r)
            }
            fn update(conn: &mut DbConn, r: &Self) -> Result<()> {
                $update(conn, r)
            }
            impl_master!(@extra $t);
        }
    };
    (@extra Item) => {
        fn check_unique(conn: &mut DbConn, r: &Self) -> Result<()> {
            if db::item_code_taken(conn, &r.code, Some(r.meta.id))? {
                return Err(Error::conflict("code", format!("an item with code {} exists", r.code)));
            }
            Ok(())
        }
    };
    (@extra Donor) => {
        fn check_unique(conn: &mut DbConn, r: &Self) -> Result<()> {
            if let Some(code) = &r.credit_code {
                if db::credit_code_taken(conn, code, Some(r.meta.id))? {
                    return Err(Error::conflict(
                        "credit_code",
                        format!("a donor with credit code {code} exists"),
                    ));
                }
            }
            Ok(())
        }
    };
    (@extra Warehouse) => {
        fn check_visible(&self, actor: &Principal) -> Result<()> {
            Ok(actor.require_warehouse(self.meta.id)?)
        }
    };
    (@extra $other:ident) => {};
}

impl_master!(
    Item,
    ItemInput,
    "item",
    Action::ManageCatalog,
    db::get_item,
    db::insert_item,
    db::update_item
);
impl_master!(
    Warehouse,
    WarehouseInput,
    "warehouse",
    Action::ManageWarehouses,
    db::get_warehouse,
    db::insert_warehouse,
    db::update_warehouse
);
impl_master!(
    Donor,
    DonorInput,
    "donor",
    Action::ManageParties,
    db::get_donor,
    db::insert_donor,
    db::update_donor
);
impl_master!(
    Recipient,
    RecipientInput,
    "recipient",
    Action::ManageParties,
    db::get_recipient,
    db::insert_recipient,
    db::update_recipient
);

// ---------------------------------------------------------------- lists

use super::Listing;
use crate::store::master::{ItemFilter, Page, PartyFilter};

fn fetch_page(page: &Page) -> Page {
    Page {
        limit: page.limit + 1,
        ..page.clone()
    }
}

pub fn list_items(
    db: &Db,
    actor: &Principal,
    f: &ItemFilter,
    page: &Page,
) -> Result<Listing<Item>> {
    actor.require(Action::ReadMasterData)?;
    let rows = db.read(|c| db::list_items(c, f, &fetch_page(page)))?;
    Ok(Listing::from_rows(rows, page.limit, |r| {
        r.meta.id.to_string()
    }))
}

pub fn list_warehouses(
    db: &Db,
    actor: &Principal,
    region_prefix: Option<&str>,
    page: &Page,
) -> Result<Listing<Warehouse>> {
    actor.require(Action::ReadMasterData)?;
    let only =
        (actor.role == crate::domain::access::Role::Clerk).then_some(actor.warehouses.as_slice());
    let rows = db.read(|c| db::list_warehouses(c, region_prefix, only, &fetch_page(page)))?;
    Ok(Listing::from_rows(rows, page.limit, |r| {
        r.meta.id.to_string()
    }))
}

pub fn list_donors(
    db: &Db,
    actor: &Principal,
    f: &PartyFilter,
    page: &Page,
) -> Result<Listing<Donor>> {
    actor.require(Action::ReadMasterData)?;
    let rows = db.read(|c| db::list_donors(c, f, &fetch_page(page)))?;
    Ok(Listing::from_rows(rows, page.limit, |r| {
        r.meta.id.to_string()
    }))
}

pub fn list_recipients(
    db: &Db,
    actor: &Principal,
    f: &PartyFilter,
    page: &Page,
) -> Result<Listing<Recipient>> {
    actor.require(Action::ReadMasterData)?;
    let rows = db.read(|c| db::list_recipients(c, f, &fetch_page(page)))?;
    Ok(Listing::from_rows(rows, page.limit, |r| {
        r.meta.id.to_string()
    }))
}
