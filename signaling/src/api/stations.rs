//! Station connectivity history for admins: each commune station's calls
//! summed per local day or week (loss, RTT, bitrate, reconnections,
//! audio-only time, failed joins), as JSON for the page and as CSV.
//!
//! The sums, the time zone and what a failed join is are the records
//! store's (`telehealth_records::StationConnectivity`); here are the query's
//! checks and the two encodings.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use telehealth_records::{
    local_day, Bucket, ConnectivityQuery, FacilityId, FacilityKind, FieldError, RecordsError, Role,
    StationConnectivity, Timestamp,
};

use super::ApiRoutes;
use crate::access;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, ApiQuery};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/api/stations/connectivity", json)
        .get("/api/stations/connectivity.csv", csv)
}

/// Days covered when `from` is not given: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Query {
    /// First local day (`YYYY-MM-DD`), included; default 29 days before `to`.
    #[serde(default)]
    from: Option<String>,
    /// Last local day, included; default today.
    #[serde(default)]
    to: Option<String>,
    /// `day` (default) or `week`.
    #[serde(default)]
    bucket: Option<String>,
    /// One commune station.
    #[serde(default)]
    facility_id: Option<String>,
}

/// The report: the range as read, and one row per station and bucket.
#[derive(Serialize, JsonSchema)]
struct Report {
    from: String,
    to: String,
    bucket: Bucket,
    /// The zone the days are counted in.
    time_zone: &'static str,
    rows: Vec<StationConnectivity>,
}

fn bad(field: &'static str, code: &'static str, vi: &str, en: &str) -> ApiError {
    ApiError::BadRequest {
        code,
        detail: format!("“{field}”: {vi}"),
        detail_en: format!("`{field}`: {en}"),
        errors: vec![FieldError::new(field, code, vi, en)],
    }
}

fn date(field: &'static str, v: Option<String>) -> ApiResult<Option<NaiveDate>> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .filter(|d| (1900..3000).contains(&chrono::Datelike::year(d)))
                .ok_or_else(|| {
                    bad(
                        field,
                        "invalid_date",
                        "Ngày phải ở dạng NNNN-TT-NN, ví dụ 2026-12-01.",
                        "Use a date as YYYY-MM-DD, e.g. 2026-12-01.",
                    )
                })
        })
        .transpose()
}

/// The query checked: dates, bucket, range, and that the facility is a
/// commune station.
async fn read(s: &AppState, q: Query) -> ApiResult<ConnectivityQuery> {
    let bucket = match q.bucket.as_deref().filter(|b| !b.is_empty()) {
        None => Bucket::Day,
        Some(b) => b.parse().map_err(|()| {
            bad(
                "bucket",
                "invalid_bucket",
                "Chỉ nhận “day” (ngày) hoặc “week” (tuần).",
                "Use `day` or `week`.",
            )
        })?,
    };
    let to = date("to", q.to)?.unwrap_or_else(|| local_day(Timestamp::now()));
    let from = date("from", q.from)?.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    let station_id = q
        .facility_id
        .filter(|f| !f.is_empty())
        .map(|f| parse_id::<FacilityId>("facility_id", &f))
        .transpose()?;
    if let Some(id) = station_id {
        let not_station = || {
            bad(
                "facility_id",
                "not_a_station",
                "Đây không phải một trạm y tế xã.",
                "Not a commune station.",
            )
        };
        match s.store.facility(id).await {
            Ok(f) if f.kind == FacilityKind::CommuneStation => {}
            Ok(_) | Err(RecordsError::NotFound(_)) => return Err(not_station()),
            Err(e) => return Err(e.into()),
        }
    }
    let query = ConnectivityQuery {
        from,
        to,
        bucket,
        station_id,
    };
    // A range the store refuses is the query's fault: 400, its field named.
    query.check().map_err(|errors| {
        let first = &errors[0];
        ApiError::BadRequest {
            code: first.code,
            detail: first.message.clone(),
            detail_en: first.message_en.clone(),
            errors: errors.clone(),
        }
    })?;
    Ok(query)
}

async fn report(s: &AppState, q: Query) -> ApiResult<Report> {
    let query = read(s, q).await?;
    let rows = match s.store.station_connectivity(&query, Timestamp::now()).await {
        Err(RecordsError::Invalid(errors)) => {
            let first = &errors[0];
            return Err(ApiError::BadRequest {
                code: first.code,
                detail: first.message.clone(),
                detail_en: first.message_en.clone(),
                errors,
            });
        }
        r => r?,
    };
    Ok(Report {
        from: query.from.to_string(),
        to: query.to.to_string(),
        bucket: query.bucket,
        time_zone: "Asia/Ho_Chi_Minh",
        rows,
    })
}

async fn json(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<Query>,
) -> ApiResult<Json<Report>> {
    access::require_role(&user, &[Role::Admin])?;
    Ok(Json(report(&s, q).await?))
}

/// A text cell: quoted when it holds a separator, and kept from being read
/// as a formula by a spreadsheet (a leading `=`, `+`, `-`, `@`, tab or CR
/// gets a `'`; OWASP's CSV injection advice).
fn text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn number(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", x)).unwrap_or_default()
}

/// The CSV's header: what each row's cells are.
pub const CSV_HEADER: &str = "station_id,station_code,station_name,bucket_start,calls,call_minutes,samples,\
avg_loss_pct,p95_loss_pct,worst_loss_pct,avg_rtt_ms,avg_jitter_ms,avg_bitrate_in_kbps,avg_bitrate_out_kbps,\
reconnections,audio_only_secs,join_attempts,failed_joins,ice_failures,hospital_avg_loss_pct,hospital_avg_rtt_ms";

async fn csv(State(s): State<AppState>, user: AuthUser, ApiQuery(q): ApiQuery<Query>) -> ApiResult<Response> {
    access::require_role(&user, &[Role::Admin])?;
    let r = report(&s, q).await?;
    let mut out = format!("{CSV_HEADER}\r\n");
    for row in &r.rows {
        let cells = [
            row.station_id.to_string(),
            text(&row.station_code),
            text(&row.station_name),
            row.bucket_start.clone(),
            row.calls.to_string(),
            number(Some(row.call_minutes)),
            row.samples.to_string(),
            number(row.avg_loss_pct),
            number(row.p95_loss_pct),
            number(row.worst_loss_pct),
            number(row.avg_rtt_ms),
            number(row.avg_jitter_ms),
            number(row.avg_bitrate_in_kbps),
            number(row.avg_bitrate_out_kbps),
            row.reconnections.to_string(),
            number(Some(row.audio_only_secs)),
            row.join_attempts.to_string(),
            row.failed_joins.to_string(),
            row.ice_failures.to_string(),
            number(row.hospital_avg_loss_pct),
            number(row.hospital_avg_rtt_ms),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    let disposition = format!(
        "attachment; filename=\"station-connectivity-{}-{}-{}.csv\"",
        r.from,
        r.to,
        match r.bucket {
            Bucket::Day => "day",
            Bucket::Week => "week",
        }
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_cannot_become_formulas() {
        assert_eq!(text("Trạm Y tế xã A"), "Trạm Y tế xã A");
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("+1"), "'+1");
        assert_eq!(text("a,b"), "\"a,b\"");
    }
}
