//! Users, their tokens, and turning a bearer token into a principal.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{check_if_match, Ctx, Listing};
use crate::domain::access::{token, Action, ApiToken, Principal, User, UserInput};
use crate::domain::record::Meta;
use crate::domain::validation::{opt_text, FieldErrors};
use crate::error::{Error, Result};
use crate::store::master::Page;
use crate::store::{master, users as db, Db, DbConn};

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    #[serde(default)]
    pub label: Option<String>,
    /// When the token stops working; never, if absent.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A newly made token. `token` is shown this once and stored only as a hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiToken,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: User,
    pub token: IssuedToken,
}

fn check_user(conn: &mut DbConn, user: &User) -> Result<()> {
    if db::user_name_taken(conn, &user.name, Some(user.meta.id))? {
        return Err(Error::conflict(
            "name",
            format!("a user named {} exists", user.name),
        ));
    }
    let mut e = FieldErrors::new();
    for (i, w) in user.warehouses.iter().enumerate() {
        match master::get_warehouse(conn, *w)? {
            None => e.add(
                format!("warehouses[{i}]"),
                format!("warehouse {w} does not exist"),
            ),
            Some(wh) if wh.meta.archived_at.is_some() => e.add(
                format!("warehouses[{i}]"),
                format!("warehouse {w} is archived"),
            ),
            Some(_) => {}
        }
    }
    e.finish(|| ()).map_err(Error::from)
}

fn issue(conn: &mut DbConn, ctx: &Ctx, user_id: Uuid, input: TokenInput) -> Result<IssuedToken> {
    let mut e = FieldErrors::new();
    let label = opt_text(&mut e, "label", input.label.as_deref(), 100);
    if matches!(input.expires_at, Some(t) if t <= ctx.now) {
        e.add("expires_at", "must be in the future");
    }
    e.finish(|| ())?;
    let secret = token::generate();
    let info = ApiToken {
        id: Uuid::now_v7(),
        user_id,
        hint: token::hint(&secret),
        label,
        created_at: ctx.now,
        expires_at: input.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    db::insert_token(conn, &info, &token::hash(&secret))?;
    ctx.audit(
        conn,
        "token.create",
        "api_token",
        info.id,
        None,
        Some(&info),
    )?;
    Ok(IssuedToken {
        token: secret,
        info,
    })
}

/// Creates a user and their first token, in one transaction and two audit events.
pub async fn create_user(db: &Db, ctx: &Ctx, input: UserInput) -> Result<CreatedUser> {
    ctx.actor.require(Action::ManageUsers)?;
    let input = input.validate()?;
    let user = User {
        meta: Meta::new(ctx.now),
        name: input.name,
        role: input.role,
        warehouses: input.warehouses,
    };
    let ctx = ctx.clone();
    db.write(move |conn| {
        check_user(conn, &user)?;
        db::insert_user(conn, &user)?;
        ctx.audit(conn, "user.create", "user", user.meta.id, None, Some(&user))?;
        let token = issue(
            conn,
            &ctx,
            user.meta.id,
            TokenInput {
                label: Some("first token".into()),
                expires_at: None,
            },
        )?;
        Ok(CreatedUser {
            user: user.clone(),
            token,
        })
    })
    .await
}

pub fn get_user(db: &Db, actor: &Principal, id: Uuid) -> Result<User> {
    if actor.user_id != id {
        actor.require(Action::ManageUsers)?;
    }
    db.read(|c| db::get_user(c, id))?
        .ok_or_else(|| Error::not_found("user", id))
}

pub fn list_users(db: &Db, actor: &Principal, page: &Page) -> Result<Listing<User>> {
    actor.require(Action::ManageUsers)?;
    let fetch = Page {
        limit: page.limit + 1,
        ..page.clone()
    };
    let rows = db.read(|c| db::list_users(c, &fetch))?;
    Ok(Listing::from_rows(rows, page.limit, |u| {
        u.meta.id.to_string()
    }))
}

pub async fn patch_user(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    if_match: Option<&str>,
    patch: serde_json::Value,
) -> Result<User> {
    ctx.actor.require(Action::ManageUsers)?;
    let (ctx, if_match) = (ctx.clone(), if_match.map(str::to_string));
    db.write(move |conn| {
        let current = db::get_user(conn, id)?.ok_or_else(|| Error::not_found("user", id))?;
        check_if_match(if_match.as_deref(), &current.meta.etag())?;
        if current.meta.archived_at.is_some() {
            return Err(Error::conflict("id", format!("user {id} is deactivated")));
        }
        let input = super::patched(&current.to_input(), &patch)?.validate()?;
        let updated = User {
            meta: current.meta.next(ctx.now),
            name: input.name,
            role: input.role,
            warehouses: input.warehouses,
        };
        check_user(conn, &updated)?;
        db::update_user(conn, &updated)?;
        ctx.audit(
            conn,
            "user.update",
            "user",
            id,
            Some(&current),
            Some(&updated),
        )?;
        Ok(updated)
    })
    .await
}

/// Deactivates a user and revokes all their tokens at once.
pub async fn deactivate_user(db: &Db, ctx: &Ctx, id: Uuid) -> Result<User> {
    ctx.actor.require(Action::ManageUsers)?;
    if id == ctx.actor.user_id {
        return Err(Error::conflict("id", "you cannot deactivate yourself"));
    }
    let ctx = ctx.clone();
    db.write(move |conn| {
        let current = db::get_user(conn, id)?.ok_or_else(|| Error::not_found("user", id))?;
        if current.meta.archived_at.is_some() {
            return Err(Error::conflict(
                "id",
                format!("user {id} is already deactivated"),
            ));
        }
        let mut updated = current.clone();
        updated.meta = current.meta.next(ctx.now);
        updated.meta.archived_at = Some(ctx.now);
        db::update_user(conn, &updated)?;
        db::revoke_all_tokens(conn, id, ctx.now)?;
        ctx.audit(
            conn,
            "user.deactivate",
            "user",
            id,
            Some(&current),
            Some(&updated),
        )?;
        Ok(updated)
    })
    .await
}

pub async fn create_token(
    db: &Db,
    ctx: &Ctx,
    user_id: Uuid,
    input: TokenInput,
) -> Result<IssuedToken> {
    ctx.actor.require(Action::ManageUsers)?;
    let ctx = ctx.clone();
    db.write(move |conn| {
        let user = db::get_user(conn, user_id)?.ok_or_else(|| Error::not_found("user", user_id))?;
        if user.meta.archived_at.is_some() {
            return Err(Error::conflict(
                "user_id",
                format!("user {user_id} is deactivated"),
            ));
        }
        issue(conn, &ctx, user_id, input.clone())
    })
    .await
}

pub fn list_tokens(db: &Db, actor: &Principal, user_id: Uuid) -> Result<Vec<ApiToken>> {
    if actor.user_id != user_id {
        actor.require(Action::ManageUsers)?;
    }
    db.read(|c| {
        db::get_user(c, user_id)?.ok_or_else(|| Error::not_found("user", user_id))?;
        db::list_tokens(c, user_id)
    })
}

pub async fn revoke_token(db: &Db, ctx: &Ctx, user_id: Uuid, token_id: Uuid) -> Result<ApiToken> {
    ctx.actor.require(Action::ManageUsers)?;
    let ctx = ctx.clone();
    db.write(move |conn| {
        let current = db::get_token(conn, token_id)?
            .filter(|t| t.user_id == user_id)
            .ok_or_else(|| Error::not_found("token", token_id))?;
        if current.revoked_at.is_some() {
            return Err(Error::conflict("token_id", "the token is already revoked"));
        }
        db::revoke_token(conn, token_id, ctx.now)?;
        let revoked = ApiToken {
            revoked_at: Some(ctx.now),
            ..current.clone()
        };
        ctx.audit(
            conn,
            "token.revoke",
            "api_token",
            token_id,
            Some(&current),
            Some(&revoked),
        )?;
        Ok(revoked)
    })
    .await
}

/// Resolves a bearer token to its user. Revoked and expired tokens and deactivated users
/// fail the same way, so a caller learns nothing about which.
pub fn authenticate(db: &Db, bearer: &str) -> Result<Principal> {
    const REFUSED: &str = "the token is not valid";
    if !token::looks_valid(bearer) {
        return Err(Error::Unauthorized(REFUSED));
    }
    let now = Utc::now();
    let found = db.read(|c| db::find_by_hash(c, &token::hash(bearer)))?;
    let (tok, user) = found.ok_or(Error::Unauthorized(REFUSED))?;
    let live = tok.revoked_at.is_none()
        && tok.expires_at.is_none_or(|t| t > now)
        && user.meta.archived_at.is_none();
    if !live {
        return Err(Error::Unauthorized(REFUSED));
    }
    if tok
        .last_used_at
        .is_none_or(|t| now - t > chrono::Duration::seconds(60))
    {
        // Bookkeeping, not a change anyone asked for: it is not audited, and a failure to
        // record it must not fail the request.
        if let Err(e) = db.write_blocking({
            let id = tok.id;
            move |c| db::touch_token(c, id, now)
        }) {
            tracing::warn!(error = %e, "could not record token use");
        }
    }
    Ok(user.principal())
}
