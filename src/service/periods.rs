//! Closing periods. A close records the closing position of every lot at every location
//! (quantity and book value) and the audit head; after it, no movement and no estimated
//! value may be dated into the period, so its reports never change.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Ctx;
use crate::domain::access::{Action, Principal};
use crate::domain::report::Amount;
use crate::domain::validation::{opt_text, FieldErrors};
use crate::error::{Error, Result};
use crate::store::periods::{self as db, Period};
use crate::store::{self, Db, DbConn};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseInput {
    /// The last business day of the period (UTC); it closes at the end of that day.
    pub through: NaiveDate,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOffInput {
    #[serde(default)]
    pub note: Option<String>,
}

/// A closed period with the stock it closed on, per item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PeriodView {
    #[serde(flatten)]
    pub period: Period,
    pub closing_stock: Vec<ClosingLine>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClosingLine {
    pub item_id: Uuid,
    #[schema(value_type = String)]
    pub quantity: crate::domain::decimal::Quantity,
    /// Book value: the frozen values of the movements that brought the stock here.
    #[schema(value_type = String)]
    pub value: crate::domain::decimal::Money,
}

/// Refuses a business time inside a closed period. Called for every movement written.
pub fn check_open(conn: &mut DbConn, at: DateTime<Utc>, field: &str) -> Result<()> {
    if let Some(p) = db::latest(conn)? {
        if at < p.closed_until {
            return Err(Error::conflict(
                field,
                format!(
                    "falls in a closed period (closed until {}); post a correction dated in an open period",
                    crate::domain::audit::timestamp(p.closed_until)
                ),
            ));
        }
    }
    Ok(())
}

fn view(conn: &mut DbConn, period: Period) -> Result<PeriodView> {
    let mut per_item: std::collections::BTreeMap<Uuid, Amount> = Default::default();
    for ((_, loc), (item, a)) in db::balances(conn, period.id)? {
        if loc.holds_stock() {
            per_item.entry(item).or_default().add(a, 1);
        }
    }
    Ok(PeriodView {
        period,
        closing_stock: per_item
            .into_iter()
            .map(|(item_id, a)| ClosingLine {
                item_id,
                quantity: a.quantity(),
                value: a.money(),
            })
            .collect(),
    })
}

pub async fn close(dbh: &Db, ctx: &Ctx, input: CloseInput) -> Result<PeriodView> {
    ctx.actor.require(Action::ClosePeriods)?;
    let until = (input.through + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    if until > ctx.now {
        return Err(Error::field("through", "the period has not ended yet"));
    }
    ctx.write(dbh, move |ctx, conn| {
        let previous = db::latest(conn)?;
        if let Some(p) = &previous {
            if until <= p.closed_until {
                return Err(Error::conflict(
                    "through",
                    format!(
                        "periods up to {} are already closed",
                        crate::domain::audit::timestamp(p.closed_until)
                    ),
                ));
            }
        }
        let positions = super::ledger::reads::positions_at(conn, until)?;
        let (seq, hash) =
            store::audit::head(conn)?.unwrap_or((0, crate::domain::audit::GENESIS_HASH.into()));
        let period = Period {
            id: Uuid::now_v7(),
            starts_at: previous.map(|p| p.closed_until),
            closed_until: until,
            closed_at: ctx.now,
            closed_by: ctx.actor.user_id,
            audit_seq: seq,
            audit_hash: hash,
            signed_off_at: None,
            signed_off_by: None,
            sign_off_note: None,
        };
        db::insert(conn, &period, &positions)?;
        let v = view(conn, period)?;
        ctx.audit(conn, "period.close", "period", v.period.id, None, Some(&v))?;
        Ok(v)
    })
    .await
}

pub async fn sign_off(dbh: &Db, ctx: &Ctx, id: Uuid, input: SignOffInput) -> Result<PeriodView> {
    ctx.actor.require(Action::ClosePeriods)?;
    ctx.write(dbh, move |ctx, conn| {
        let current = db::get(conn, id)?.ok_or_else(|| Error::not_found("period", id))?;
        if current.signed_off_at.is_some() {
            return Err(Error::conflict("id", "the period is already signed off"));
        }
        let mut e = FieldErrors::new();
        let note = opt_text(&mut e, "note", input.note.as_deref(), 1000);
        e.finish(|| ())?;
        let signed = Period {
            signed_off_at: Some(ctx.now),
            signed_off_by: Some(ctx.actor.user_id),
            sign_off_note: note,
            ..current.clone()
        };
        db::update(conn, &signed)?;
        ctx.audit(
            conn,
            "period.sign_off",
            "period",
            id,
            Some(&current),
            Some(&signed),
        )?;
        view(conn, signed)
    })
    .await
}

pub fn list(dbh: &Db, actor: &Principal) -> Result<Vec<Period>> {
    actor.require(Action::ReadReports)?;
    dbh.read(db::list)
}

pub fn get(dbh: &Db, actor: &Principal, id: Uuid) -> Result<PeriodView> {
    actor.require(Action::ReadReports)?;
    dbh.read(|conn| {
        let p = db::get(conn, id)?.ok_or_else(|| Error::not_found("period", id))?;
        view(conn, p)
    })
}
