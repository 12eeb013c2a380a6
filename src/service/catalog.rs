//! An item's dated value history.

use uuid::Uuid;

use super::Ctx;
use crate::domain::access::{Action, Principal};
use crate::domain::catalog::{ItemValue, ItemValueInput};
use crate::error::{Error, Result};
use crate::store::{master as db, Db};

/// Adds an entry to an item's value history. Earlier entries are never changed: a corrected
/// value is a new entry, and the newest entry for an effective date is the one that applies.
pub async fn add_value(
    db: &Db,
    ctx: &Ctx,
    item_id: Uuid,
    input: ItemValueInput,
) -> Result<ItemValue> {
    ctx.actor.require(Action::ManageCatalog)?;
    let value = input.validate(item_id, ctx.actor.user_id, ctx.now)?;
    let ctx = ctx.clone();
    db.write(move |conn| {
        let item = db::get_item(conn, item_id)?.ok_or_else(|| Error::not_found("item", item_id))?;
        if item.meta.archived_at.is_some() {
            return Err(Error::conflict(
                "item_id",
                format!("item {} is archived", item.code),
            ));
        }
        let from = value
            .effective_from
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        crate::service::periods::check_open(conn, from, "effective_from")?;
        db::insert_item_value(conn, &value)?;
        ctx.audit(
            conn,
            "item_value.create",
            "item_value",
            value.id,
            None,
            Some(&value),
        )?;
        Ok(value.clone())
    })
    .await
}

pub fn values(db: &Db, actor: &Principal, item_id: Uuid) -> Result<Vec<ItemValue>> {
    actor.require(Action::ReadMasterData)?;
    db.read(|conn| {
        db::get_item(conn, item_id)?.ok_or_else(|| Error::not_found("item", item_id))?;
        db::item_values(conn, item_id)
    })
}
