//! `dumont bootstrap`: the first organization, its admin (org-wide admin
//! role), its billing account, and an API key with the admin's permissions.

use std::time::Duration;

use anyhow::{Context, bail};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::api_keys::routes::insert_key;
use crate::audit::{self, AuditEntry};
use crate::auth::password;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::schema::{billing_accounts, orgs, users};
use crate::events;
use crate::rbac::builtin::ADMIN_ROLE_ID;
use crate::users::model as user_model;

#[derive(Debug, Serialize)]
pub struct Bootstrapped {
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    /// A Bearer credential for the public API, acting as this admin.
    pub api_key: String,
    /// false when the org and admin existed already (a new key was issued).
    pub created: bool,
}

pub const ALL_SCOPES: [&str; 7] =
    ["instances:*", "reservations:*", "billing:*", "team:*", "admin:*", "jobs:*", "finetune:*"];

pub async fn run(
    settings: &Settings,
    org_name: &str,
    email: &str,
    pass: &str,
    only_if_empty: bool,
) -> anyhow::Result<Option<Bootstrapped>> {
    let pool = crate::db::build_pool(&settings.database.url, 2, Duration::from_secs(5))?;
    let mut conn = pool.get().await.context("cannot connect to PostgreSQL")?;
    let clock = Clock::default();
    let email = user_model::normalize_email(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let org_name = user_model::check_name("org", org_name, 200).map_err(|e| anyhow::anyhow!("{e}"))?;
    password::check_strength(pass, settings.auth.min_password_length).map_err(|e| anyhow::anyhow!("{e}"))?;

    let any_org: i64 = orgs::table.count().get_result(&mut conn).await?;
    if only_if_empty && any_org > 0 {
        return Ok(None);
    }
    let existing: Option<(Uuid, Uuid, Option<String>)> = users::table
        .filter(users::email.eq(&email))
        .select((users::id, users::org_id, users::password_hash))
        .first(&mut conn)
        .await
        .optional()?;
    let now = clock.now();
    let org_named: Option<Uuid> =
        orgs::table.filter(orgs::name.eq(&org_name)).select(orgs::id).first(&mut conn).await.optional()?;
    match (&existing, org_named) {
        (Some((_, user_org, _)), named) if named != Some(*user_org) => {
            bail!("{email} belongs to another organization than {org_name:?}; give that organization's name")
        }
        (None, Some(_)) => {
            bail!("organization {org_name:?} exists already; bootstrap it again with its admin's email and password")
        }
        _ => {}
    }
    if let Some((user_id, org_id, hash)) = existing {
        // Re-running issues a new key only to someone who knows the password.
        if !password::verify(pass.to_string(), hash).await.map_err(|e| anyhow::anyhow!("{e}"))? {
            bail!("{email} exists already and the password does not match");
        }
        let key = conn
            .transaction(async |c| {
                let key = insert_key(c, org_id, user_id, "bootstrap", &ALL_SCOPES, None, now).await?;
                audit::append(c, &key_created(org_id, user_id, &email, key.0, now)).await?;
                Ok::<_, diesel::result::Error>(key)
            })
            .await?;
        return Ok(Some(Bootstrapped { org_id, user_id, email, api_key: key.1, created: false }));
    }
    let hash = password::hash(pass.to_string()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = conn
        .transaction(async |c| {
            let org_id = Uuid::now_v7();
            diesel::insert_into(orgs::table)
                .values((orgs::id.eq(org_id), orgs::name.eq(&org_name), orgs::created_at.eq(now)))
                .execute(c)
                .await?;
            diesel::insert_into(billing_accounts::table)
                .values((billing_accounts::org_id.eq(org_id), billing_accounts::updated_at.eq(now)))
                .execute(c)
                .await?;
            let user_id =
                user_model::insert(c, org_id, &email, "Administrator", Some(&hash), Some(ADMIN_ROLE_ID), now).await?;
            audit::append(
                c,
                &AuditEntry {
                    org_id,
                    user_id: Some(user_id),
                    user_email: Some(email.clone()),
                    action: events::ORG_CREATE,
                    resource_type: "org",
                    resource_id: Some(org_id.to_string()),
                    ip_address: None,
                    user_agent: Some("dumont bootstrap".into()),
                    metadata: serde_json::json!({"name": org_name, "admin": email}),
                    at: now,
                },
            )
            .await?;
            let (key_id, key) = insert_key(c, org_id, user_id, "bootstrap", &ALL_SCOPES, None, now).await?;
            audit::append(c, &key_created(org_id, user_id, &email, key_id, now)).await?;
            Ok::<_, diesel::result::Error>(Bootstrapped {
                org_id,
                user_id,
                email: email.clone(),
                api_key: key,
                created: true,
            })
        })
        .await?;
    Ok(Some(out))
}

fn key_created(
    org_id: Uuid,
    user_id: Uuid,
    email: &str,
    key_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> AuditEntry {
    AuditEntry {
        org_id,
        user_id: Some(user_id),
        user_email: Some(email.to_string()),
        action: events::API_KEY_CREATE,
        resource_type: "api_key",
        resource_id: Some(key_id.to_string()),
        ip_address: None,
        user_agent: Some("dumont bootstrap".into()),
        metadata: serde_json::json!({"name": "bootstrap", "scopes": ALL_SCOPES}),
        at,
    }
}
