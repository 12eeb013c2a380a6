//! Closed periods and their closing positions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{period_balances, periods};
use super::{parse_opt_ts, parse_ts, parse_uuid, ts, DbConn};
use crate::domain::ledger::location::{Location, LocationKind};
use crate::domain::report::Amount;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Period {
    pub id: Uuid,
    /// The previous period's end (absent for the first period: from the beginning).
    pub starts_at: Option<DateTime<Utc>>,
    /// Movements dated before this instant are closed.
    pub closed_until: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    pub closed_by: Uuid,
    /// The audit head when the period was closed.
    pub audit_seq: i64,
    pub audit_hash: String,
    pub signed_off_at: Option<DateTime<Utc>>,
    pub signed_off_by: Option<Uuid>,
    pub sign_off_note: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = periods, treat_none_as_null = true, treat_none_as_default_value = false)]
struct PeriodRow {
    id: String,
    starts_at: Option<String>,
    closed_until: String,
    closed_at: String,
    closed_by: String,
    audit_seq: i64,
    audit_hash: String,
    signed_off_at: Option<String>,
    signed_off_by: Option<String>,
    sign_off_note: Option<String>,
}

impl From<&Period> for PeriodRow {
    fn from(p: &Period) -> Self {
        PeriodRow {
            id: p.id.to_string(),
            starts_at: p.starts_at.map(ts),
            closed_until: ts(p.closed_until),
            closed_at: ts(p.closed_at),
            closed_by: p.closed_by.to_string(),
            audit_seq: p.audit_seq,
            audit_hash: p.audit_hash.clone(),
            signed_off_at: p.signed_off_at.map(ts),
            signed_off_by: p.signed_off_by.map(|u| u.to_string()),
            sign_off_note: p.sign_off_note.clone(),
        }
    }
}

impl TryFrom<PeriodRow> for Period {
    type Error = Error;
    fn try_from(r: PeriodRow) -> Result<Self> {
        Ok(Period {
            id: parse_uuid(&r.id)?,
            starts_at: parse_opt_ts(r.starts_at.as_deref())?,
            closed_until: parse_ts(&r.closed_until)?,
            closed_at: parse_ts(&r.closed_at)?,
            closed_by: parse_uuid(&r.closed_by)?,
            audit_seq: r.audit_seq,
            audit_hash: r.audit_hash,
            signed_off_at: parse_opt_ts(r.signed_off_at.as_deref())?,
            signed_off_by: r.signed_off_by.as_deref().map(parse_uuid).transpose()?,
            sign_off_note: r.sign_off_note,
        })
    }
}

pub fn list(conn: &mut DbConn) -> Result<Vec<Period>> {
    let rows: Vec<PeriodRow> = periods::table
        .select(PeriodRow::as_select())
        .order(periods::closed_until.asc())
        .load(conn)?;
    rows.into_iter().map(Period::try_from).collect()
}

pub fn get(conn: &mut DbConn, id: Uuid) -> Result<Option<Period>> {
    periods::table
        .find(id.to_string())
        .select(PeriodRow::as_select())
        .get_result::<PeriodRow>(conn)
        .optional()?
        .map(Period::try_from)
        .transpose()
}

/// The latest closed period, whose end no movement may be dated before.
pub fn latest(conn: &mut DbConn) -> Result<Option<Period>> {
    if let Some(Some(known)) = super::group::master(|m| m.latest_period.clone()) {
        return Ok(known);
    }
    super::batch::settle(conn)?;
    let found = on!(conn, |c| periods::table
        .select(PeriodRow::as_select())
        .order(periods::closed_until.desc())
        .get_result::<PeriodRow>(c)
        .optional())?
    .map(Period::try_from)
    .transpose()?;
    super::group::master(|m| m.latest_period = Some(found.clone()));
    Ok(found)
}

/// The latest closed period ending at or before `t`: where a position at `t` can start from.
pub fn latest_until(conn: &mut DbConn, t: DateTime<Utc>) -> Result<Option<Period>> {
    periods::table
        .filter(periods::closed_until.le(ts(t)))
        .select(PeriodRow::as_select())
        .order(periods::closed_until.desc())
        .get_result::<PeriodRow>(conn)
        .optional()?
        .map(Period::try_from)
        .transpose()
}

pub fn insert(
    conn: &mut DbConn,
    p: &Period,
    balances: &HashMap<(Uuid, Location), (Uuid, Amount)>,
) -> Result<()> {
    super::batch::settle(conn)?;
    super::group::master_changing();
    diesel::insert_into(periods::table)
        .values(PeriodRow::from(p))
        .execute(conn)
        .map(super::group::wrote)?;
    let rows: Vec<_> = balances
        .iter()
        .filter(|(_, (_, a))| a.qty != 0 || a.cents != 0)
        .map(|((lot, loc), (item, a))| {
            (
                period_balances::period_id.eq(p.id.to_string()),
                period_balances::lot_id.eq(lot.to_string()),
                period_balances::location_kind.eq(loc.kind.as_str()),
                period_balances::location_id.eq(loc.id.to_string()),
                period_balances::item_id.eq(item.to_string()),
                period_balances::quantity_milli.eq(a.qty),
                period_balances::value_cents.eq(a.cents),
            )
        })
        .collect();
    for row in rows {
        diesel::insert_into(period_balances::table)
            .values(row)
            .execute(conn)
            .map(super::group::wrote)?;
    }
    Ok(())
}

pub fn update(conn: &mut DbConn, p: &Period) -> Result<()> {
    super::batch::settle(conn)?;
    super::group::master_changing();
    diesel::update(periods::table.find(p.id.to_string()))
        .set(PeriodRow::from(p))
        .execute(conn)
        .map(super::group::wrote)?;
    Ok(())
}

/// The closing position of every (lot, location) of a period: item, quantity and book value.
pub fn balances(
    conn: &mut DbConn,
    period: Uuid,
) -> Result<HashMap<(Uuid, Location), (Uuid, Amount)>> {
    let rows: Vec<(String, String, String, String, i64, i64)> = period_balances::table
        .filter(period_balances::period_id.eq(period.to_string()))
        .select((
            period_balances::lot_id,
            period_balances::location_kind,
            period_balances::location_id,
            period_balances::item_id,
            period_balances::quantity_milli,
            period_balances::value_cents,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(lot, kind, id, item, q, v)| {
            let loc = Location {
                kind: LocationKind::parse(&kind)
                    .ok_or_else(|| Error::Internal(format!("bad location kind '{kind}'")))?,
                id: parse_uuid(&id)?,
            };
            Ok((
                (parse_uuid(&lot)?, loc),
                (parse_uuid(&item)?, Amount { qty: q, cents: v }),
            ))
        })
        .collect()
}
