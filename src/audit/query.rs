//! Audit log filters: `start_date`, `end_date` (a date is that whole UTC
//! day; RFC 3339 instants work too), `action` (exact, or a prefix such as
//! `instance.*`), `user_email`, `resource_id`, `limit`, `cursor`. Newest
//! first; the cursor is the (timestamp, seq) of the last record returned.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::record::AuditRecord;
use crate::db::schema::audit_logs;
use crate::error::{ApiError, ApiResult};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Filters as sent, in the query string or as a JSON body (POST, as the
/// seed's curl sends them, or GET). Values are strings so that a bad one
/// gets a 400 that names it.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFilters {
    /// `2024-01-01` (from the start of that UTC day) or an RFC 3339 instant.
    pub start_date: Option<String>,
    /// `2024-01-31` (to the end of that UTC day) or an RFC 3339 instant (inclusive).
    pub end_date: Option<String>,
    /// `instance.create`, or a prefix: `instance.*`.
    pub action: Option<String>,
    pub user_email: Option<String>,
    pub resource_id: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(value_type = Option<i64>)]
    #[schema(value_type = Option<i64>)]
    #[serde(default, deserialize_with = "string_or_number")]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Export only: `csv` or `jsonl`.
    pub format: Option<String>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

impl RawFilters {
    /// Filters sent as a JSON object, read key by key so that a bad key or
    /// value gets a 400 naming it (serde's own errors do not say which).
    pub fn from_json(body: &[u8]) -> ApiResult<RawFilters> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(ApiError::bad_request("filters must be a JSON object"));
        };
        let mut f = RawFilters::default();
        for (key, v) in map {
            let slot = match key.as_str() {
                "start_date" => &mut f.start_date,
                "end_date" => &mut f.end_date,
                "action" => &mut f.action,
                "user_email" => &mut f.user_email,
                "resource_id" => &mut f.resource_id,
                "limit" => &mut f.limit,
                "cursor" => &mut f.cursor,
                "format" => &mut f.format,
                _ => {
                    return Err(ApiError::bad_field(
                        key,
                        "unknown filter; use start_date, end_date, action, user_email, resource_id, limit, cursor",
                    ));
                }
            };
            *slot = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) if key == "limit" => Some(n.to_string()),
                _ if key == "limit" => return Err(ApiError::bad_field(key, "must be a number")),
                _ => return Err(ApiError::bad_field(key, "must be a string")),
            };
        }
        Ok(f)
    }

    /// Fills what the query string left out from the JSON body.
    pub fn or(self, other: RawFilters) -> RawFilters {
        RawFilters {
            start_date: self.start_date.or(other.start_date),
            end_date: self.end_date.or(other.end_date),
            action: self.action.or(other.action),
            user_email: self.user_email.or(other.user_email),
            resource_id: self.resource_id.or(other.resource_id),
            limit: self.limit.or(other.limit),
            cursor: self.cursor.or(other.cursor),
            format: self.format.or(other.format),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    Exact(String),
    /// Records whose action starts with this (it ends with '.').
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct Filters {
    pub start: Option<DateTime<Utc>>,
    /// Exclusive.
    pub end: Option<DateTime<Utc>>,
    pub action: Option<ActionFilter>,
    pub user_email: Option<String>,
    pub resource_id: Option<String>,
    pub limit: i64,
    pub cursor: Option<(DateTime<Utc>, i64)>,
}

fn parse_bound(field: &str, s: &str, end: bool) -> ApiResult<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end { d.succ_opt().ok_or_else(|| ApiError::bad_field(field, "date out of range"))? } else { d };
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    match DateTime::parse_from_rfc3339(s) {
        // An instant end bound is inclusive: stop just after it.
        Ok(t) if end => Ok(t.with_timezone(&Utc) + chrono::Duration::microseconds(1)),
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => {
            Err(ApiError::bad_field(field, format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant")))
        }
    }
}

fn parse_action(s: &str) -> ApiResult<ActionFilter> {
    let valid = |p: &str| {
        !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    match s.strip_suffix('*') {
        Some(prefix) if valid(prefix) && prefix.ends_with('.') => Ok(ActionFilter::Prefix(prefix.to_string())),
        None if valid(s) => Ok(ActionFilter::Exact(s.to_string())),
        _ => Err(ApiError::bad_field(
            "action",
            format!("{s:?} is not an action name or a prefix such as \"instance.*\""),
        )),
    }
}

pub fn encode_cursor(r: &AuditRecord) -> String {
    hex::encode(format!("{}:{}", r.occurred_at.timestamp_micros(), r.seq))
}

fn decode_cursor(s: &str) -> ApiResult<(DateTime<Utc>, i64)> {
    let bad = || ApiError::bad_field("cursor", "not a cursor returned by this API");
    let raw = String::from_utf8(hex::decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
    let (micros, seq) = raw.split_once(':').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, seq.parse().map_err(|_| bad())?))
}

impl Filters {
    pub fn parse(raw: &RawFilters) -> ApiResult<Filters> {
        let start = raw.start_date.as_deref().map(|s| parse_bound("start_date", s, false)).transpose()?;
        let end = raw.end_date.as_deref().map(|s| parse_bound("end_date", s, true)).transpose()?;
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(ApiError::bad_field("end_date", "must not be before start_date"));
        }
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(ApiError::bad_field("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        // Free-text filters are compared in SQL, where a NUL would fail.
        for (field, v) in [("user_email", &raw.user_email), ("resource_id", &raw.resource_id)] {
            if let Some(problem) = v.as_deref().and_then(|s| crate::validate::text_problem(s, false)) {
                return Err(ApiError::bad_field(field, problem));
            }
        }
        Ok(Filters {
            start,
            end,
            action: raw.action.as_deref().map(parse_action).transpose()?,
            user_email: raw.user_email.as_ref().map(|e| e.trim().to_lowercase()),
            resource_id: raw.resource_id.clone(),
            limit,
            cursor: raw.cursor.as_deref().map(decode_cursor).transpose()?,
        })
    }
}

/// One page, newest first.
pub async fn page(conn: &mut AsyncPgConnection, org: Uuid, f: &Filters) -> QueryResult<Vec<AuditRecord>> {
    let mut q = audit_logs::table.filter(audit_logs::org_id.eq(org)).select(AuditRecord::as_select()).into_boxed();
    if let Some(s) = f.start {
        q = q.filter(audit_logs::occurred_at.ge(s));
    }
    if let Some(e) = f.end {
        q = q.filter(audit_logs::occurred_at.lt(e));
    }
    match &f.action {
        Some(ActionFilter::Exact(a)) => q = q.filter(audit_logs::action.eq(a.clone())),
        Some(ActionFilter::Prefix(p)) => {
            // A byte range (the column collates "C"): 'instance.' <= action < 'instance/'.
            let mut upper = p.clone();
            upper.pop();
            upper.push('/');
            q = q.filter(audit_logs::action.ge(p.clone())).filter(audit_logs::action.lt(upper));
        }
        None => {}
    }
    if let Some(e) = &f.user_email {
        q = q.filter(audit_logs::user_email.eq(e.clone()));
    }
    if let Some(r) = &f.resource_id {
        q = q.filter(audit_logs::resource_id.eq(r.clone()));
    }
    if let Some((at, seq)) = f.cursor {
        q = q.filter(audit_logs::occurred_at.lt(at).or(audit_logs::occurred_at.eq(at).and(audit_logs::seq.lt(seq))));
    }
    q.order((audit_logs::occurred_at.desc(), audit_logs::seq.desc())).limit(f.limit).load(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_whole_utc_days_and_instants_are_inclusive() {
        let raw = RawFilters {
            start_date: Some("2024-01-01".into()),
            end_date: Some("2024-01-31".into()),
            ..Default::default()
        };
        let f = Filters::parse(&raw).unwrap();
        assert_eq!(f.start.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(f.end.unwrap().to_rfc3339(), "2024-02-01T00:00:00+00:00");
        let raw = RawFilters { end_date: Some("2024-01-15T10:30:00Z".into()), ..Default::default() };
        assert_eq!(Filters::parse(&raw).unwrap().end.unwrap().timestamp_micros() % 1_000_000, 1);
    }

    #[test]
    fn bad_filters_name_their_field() {
        for (raw, field) in [
            (RawFilters { start_date: Some("yesterday".into()), ..Default::default() }, "start_date"),
            (RawFilters { limit: Some("0".into()), ..Default::default() }, "limit"),
            (RawFilters { limit: Some("1001".into()), ..Default::default() }, "limit"),
            (RawFilters { cursor: Some("zz".into()), ..Default::default() }, "cursor"),
            (RawFilters { action: Some("instance*".into()), ..Default::default() }, "action"),
            (
                RawFilters {
                    start_date: Some("2024-02-01".into()),
                    end_date: Some("2024-01-01".into()),
                    ..Default::default()
                },
                "end_date",
            ),
        ] {
            match Filters::parse(&raw) {
                Err(ApiError::BadRequest { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert_eq!(parse_action("instance.*").unwrap(), ActionFilter::Prefix("instance.".into()));
    }
}
