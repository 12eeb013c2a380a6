//! Users and their API tokens.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{api_tokens, users};
use super::{parse_enum, parse_json, parse_opt_ts, parse_ts, parse_uuid, to_json, ts, DbConn};
use crate::domain::access::{ApiToken, User};
use crate::domain::record::Meta;
use crate::error::Result;

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true, treat_none_as_default_value = false)]
struct UserRow {
    id: String,
    name: String,
    role: String,
    warehouse_ids: String,
    version: i64,
    created_at: String,
    updated_at: String,
    archived_at: Option<String>,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> Self {
        UserRow {
            id: u.meta.id.to_string(),
            name: u.name.clone(),
            role: u.role.as_str().to_string(),
            warehouse_ids: to_json(&u.warehouses),
            version: u.meta.version,
            created_at: ts(u.meta.created_at),
            updated_at: ts(u.meta.updated_at),
            archived_at: u.meta.archived_at.map(ts),
        }
    }
}

impl TryFrom<UserRow> for User {
    type Error = crate::error::Error;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(User {
            meta: Meta {
                id: parse_uuid(&r.id)?,
                version: r.version,
                created_at: parse_ts(&r.created_at)?,
                updated_at: parse_ts(&r.updated_at)?,
                archived_at: parse_opt_ts(r.archived_at.as_deref())?,
            },
            name: r.name,
            role: parse_enum(&r.role)?,
            warehouses: parse_json(&r.warehouse_ids)?,
        })
    }
}

pub fn insert_user(conn: &mut DbConn, u: &User) -> Result<()> {
    diesel::insert_into(users::table)
        .values(UserRow::from(u))
        .execute(conn)
        .map(super::group::wrote)?;
    Ok(())
}

pub fn update_user(conn: &mut DbConn, u: &User) -> Result<()> {
    diesel::update(users::table.find(u.meta.id.to_string()))
        .set(UserRow::from(u))
        .execute(conn)
        .map(super::group::wrote)?;
    Ok(())
}

pub fn get_user(conn: &mut DbConn, id: Uuid) -> Result<Option<User>> {
    users::table
        .find(id.to_string())
        .select(UserRow::as_select())
        .get_result::<UserRow>(conn)
        .optional()?
        .map(User::try_from)
        .transpose()
}

pub fn user_name_taken(conn: &mut DbConn, name: &str, except: Option<Uuid>) -> Result<bool> {
    let mut q = users::table
        .filter(users::name.eq(name.to_string()))
        .select(users::id)
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(users::id.ne(id.to_string()));
    }
    Ok(q.get_result::<String>(conn).optional()?.is_some())
}

pub fn list_users(conn: &mut DbConn, page: &super::master::Page) -> Result<Vec<User>> {
    let mut q = users::table.select(UserRow::as_select()).into_boxed();
    if !page.include_archived {
        q = q.filter(users::archived_at.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(users::id.gt(after.to_string()));
    }
    let rows: Vec<UserRow> = q.order(users::id.asc()).limit(page.limit).load(conn)?;
    rows.into_iter().map(User::try_from).collect()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens, treat_none_as_default_value = false)]
struct TokenRow {
    id: String,
    user_id: String,
    token_hash: String,
    hint: String,
    label: Option<String>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = crate::error::Error;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(ApiToken {
            id: parse_uuid(&r.id)?,
            user_id: parse_uuid(&r.user_id)?,
            hint: r.hint,
            label: r.label,
            created_at: parse_ts(&r.created_at)?,
            expires_at: parse_opt_ts(r.expires_at.as_deref())?,
            revoked_at: parse_opt_ts(r.revoked_at.as_deref())?,
            last_used_at: parse_opt_ts(r.last_used_at.as_deref())?,
        })
    }
}

pub fn insert_token(conn: &mut DbConn, t: &ApiToken, token_hash: &str) -> Result<()> {
    diesel::insert_into(api_tokens::table)
        .values(TokenRow {
            id: t.id.to_string(),
            user_id: t.user_id.to_string(),
            token_hash: token_hash.to_string(),
            hint: t.hint.clone(),
            label: t.label.clone(),
            created_at: ts(t.created_at),
            expires_at: t.expires_at.map(ts),
            revoked_at: None,
            last_used_at: None,
        })
        .execute(conn)
        .map(super::group::wrote)?;
    Ok(())
}

pub fn get_token(conn: &mut DbConn, id: Uuid) -> Result<Option<ApiToken>> {
    api_tokens::table
        .find(id.to_string())
        .select(TokenRow::as_select())
        .get_result::<TokenRow>(conn)
        .optional()?
        .map(ApiToken::try_from)
        .transpose()
}

pub fn list_tokens(conn: &mut DbConn, user: Uuid) -> Result<Vec<ApiToken>> {
    let rows: Vec<TokenRow> = api_tokens::table
        .filter(api_tokens::user_id.eq(user.to_string()))
        .select(TokenRow::as_select())
        .order(api_tokens::id.asc())
        .load(conn)?;
    rows.into_iter().map(ApiToken::try_from).collect()
}

pub fn revoke_token(conn: &mut DbConn, id: Uuid, at: DateTime<Utc>) -> Result<()> {
    diesel::update(api_tokens::table.find(id.to_string()))
        .set(api_tokens::revoked_at.eq(Some(ts(at))))
        .execute(conn)
        .map(super::group::wrote)?;
    Ok(())
}

pub fn revoke_all_tokens(conn: &mut DbConn, user: Uuid, at: DateTime<Utc>) -> Result<()> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user.to_string()))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(ts(at))))
    .execute(conn)
    .map(super::group::wrote)?;
    Ok(())
}

/// The token with this hash and its user, whatever their state; the caller decides.
pub fn find_by_hash(conn: &mut DbConn, token_hash: &str) -> Result<Option<(ApiToken, User)>> {
    let found: Option<(TokenRow, UserRow)> = on!(conn, |c| api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(token_hash))
        .select((TokenRow::as_select(), UserRow::as_select()))
        .get_result(c)
        .optional())?;
    found
        .map(|(t, u)| Ok((ApiToken::try_from(t)?, User::try_from(u)?)))
        .transpose()
}

/// Records use, at most once a minute per token, so reads don't all become writes.
pub fn touch_token(conn: &mut DbConn, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    super::batch::settle(conn)?;
    let stale = ts(now - chrono::Duration::seconds(60));
    on!(conn, |c| diesel::update(
        api_tokens::table.find(id.to_string()).filter(
            api_tokens::last_used_at
                .is_null()
                .or(api_tokens::last_used_at.lt(&stale)),
        ),
    )
    .set(api_tokens::last_used_at.eq(Some(ts(now))))
    .execute(c))
    .map(super::group::wrote)?;
    Ok(())
}
