//! The one error type of the HTTP edge, rendered as RFC 9457 problem+json.
//!
//! Client errors carry a stable `code`, a Vietnamese `detail` and an English
//! `detail_en`, and field errors where a field is to blame. Server errors say
//! nothing of internals: the cause goes to the log with an id the client
//! also receives.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use telehealth_records::{FieldError, RecordsError};

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, bad id…).
    BadRequest {
        code: &'static str,
        detail: String,
        detail_en: String,
        errors: Vec<FieldError>,
    },
    /// 401: not logged in, or the login ended.
    Unauthorized {
        code: &'static str,
        detail: &'static str,
        detail_en: &'static str,
    },
    /// 403: logged in, but this is not yours.
    Forbidden {
        code: &'static str,
        detail: &'static str,
        detail_en: &'static str,
    },
    /// 404.
    NotFound(&'static str),
    /// 405.
    MethodNotAllowed,
    /// 409: conflicts with the current state of the record.
    Conflict {
        code: &'static str,
        detail: String,
        detail_en: String,
        current_version: Option<i64>,
        errors: Vec<FieldError>,
    },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType,
    /// 422: understood, but the values break the rules.
    Invalid(Vec<FieldError>),
    /// 429: too many attempts; try again after this many seconds.
    TooManyRequests { retry_after_secs: u64 },
    /// 429: over a per-user limit (open sockets…), named by `code`.
    OverLimit {
        code: &'static str,
        detail: &'static str,
        detail_en: &'static str,
        retry_after_secs: u64,
    },
    /// 500: our fault. The cause is logged, not sent.
    Internal(String),
    /// 503: the database cannot be reached.
    Unavailable,
    /// 503: the database's disk is full; nothing was written.
    StorageFull,
    /// 503: too much of one costly kind of work at once (password checks);
    /// try again after this many seconds.
    Busy { retry_after_secs: u64 },
    /// 503: no node can serve this call right now (its node stopped, or it
    /// is being moved); the page tries again by itself.
    CallElsewhere,
    /// 503 (readiness): this node takes no new calls (it drains before an
    /// upgrade, or cannot renew its heartbeat).
    NotTakingCalls,
}

/// The body of every error answer (RFC 9457 problem details).
#[derive(Serialize, schemars::JsonSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: String,
    detail_en: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    // Absent rather than null.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    current_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    incident_id: Option<String>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>, detail_en: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
            detail_en: detail_en.into(),
            errors: vec![],
        }
    }

    pub fn forbidden_role() -> Self {
        ApiError::Forbidden {
            code: "forbidden_role",
            detail: "Vai trò của bạn không được phép thực hiện thao tác này.",
            detail_en: "Your role may not do this.",
        }
    }

    pub fn other_facility() -> Self {
        ApiError::Forbidden {
            code: "other_facility",
            detail: "Hồ sơ này thuộc cơ sở y tế khác hoặc ca tư vấn bạn không tham gia.",
            detail_en: "This record belongs to another facility or a consultation you are not part of.",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } | ApiError::OverLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable
            | ApiError::Busy { .. }
            | ApiError::StorageFull
            | ApiError::CallElsewhere
            | ApiError::NotTakingCalls => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn what_vi(what: &str) -> &'static str {
    match what {
        "patient" => "bệnh nhân",
        "consultation" => "ca tư vấn",
        "note" => "ghi chú",
        "user" => "tài khoản",
        "facility" => "cơ sở y tế",
        "photo" => "ảnh",
        "vitals" => "chỉ số sinh tồn",
        "route" => "đường dẫn",
        _ => "mục",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut retry_after = None;
        let (code, detail, detail_en, errors, current_version, incident_id) = match self {
            ApiError::BadRequest {
                code,
                detail,
                detail_en,
                errors,
            } => (code, detail, detail_en, errors, None, None),
            ApiError::Unauthorized {
                code,
                detail,
                detail_en,
            }
            | ApiError::Forbidden {
                code,
                detail,
                detail_en,
            } => (code, detail.to_owned(), detail_en.to_owned(), vec![], None, None),
            ApiError::NotFound(what) => (
                "not_found",
                format!("Không tìm thấy {}.", what_vi(what)),
                format!("No such {what}."),
                vec![],
                None,
                None,
            ),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                "Phương thức HTTP này không dùng được cho đường dẫn này.".to_owned(),
                "This HTTP method is not allowed on this path.".to_owned(),
                vec![],
                None,
                None,
            ),
            ApiError::Conflict {
                code,
                detail,
                detail_en,
                current_version,
                errors,
            } => (code, detail, detail_en, errors, current_version, None),
            ApiError::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("Dữ liệu gửi lên quá lớn (tối đa {} KB).", limit / 1024),
                format!("The request body is too large (at most {} KB).", limit / 1024),
                vec![],
                None,
                None,
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Nội dung phải ở dạng JSON (Content-Type: application/json).".to_owned(),
                "The body must be JSON (Content-Type: application/json).".to_owned(),
                vec![],
                None,
                None,
            ),
            ApiError::Invalid(errors) => (
                "validation_failed",
                "Một số thông tin chưa hợp lệ: sửa các ô có viền đỏ rồi gửi lại.".to_owned(),
                "Some fields are not valid: correct the boxes outlined in red, then send again.".to_owned(),
                errors,
                None,
                None,
            ),
            ApiError::TooManyRequests { retry_after_secs } => {
                retry_after = Some(retry_after_secs);
                (
                    "too_many_attempts",
                    format!(
                        "Quá nhiều lần thử. Vui lòng thử lại sau {} phút.",
                        retry_after_secs.div_ceil(60)
                    ),
                    format!(
                        "Too many attempts. Try again in {} minutes.",
                        retry_after_secs.div_ceil(60)
                    ),
                    vec![],
                    None,
                    None,
                )
            }
            ApiError::Internal(cause) => {
                let incident = uuid::Uuid::new_v4().to_string();
                tracing::error!(incident = %incident, %cause, "internal error");
                (
                    "internal_error",
                    "Máy chủ gặp lỗi. Dữ liệu chưa được lưu; hãy thử lại. Nếu vẫn lỗi, báo bộ phận CNTT kèm mã sự cố.".to_owned(),
                    "The server failed; nothing was saved. Try again, and report the incident id if it persists.".to_owned(),
                    vec![],
                    None,
                    Some(incident),
                )
            }
            ApiError::OverLimit {
                code,
                detail,
                detail_en,
                retry_after_secs,
            } => {
                retry_after = Some(retry_after_secs);
                (code, detail.to_owned(), detail_en.to_owned(), vec![], None, None)
            }
            ApiError::NotTakingCalls => (
                "not_taking_calls",
                "Máy chủ này tạm ngừng nhận cuộc gọi mới (đang chuẩn bị nâng cấp). Các máy chủ khác vẫn phục vụ.".to_owned(),
                "This server takes no new calls for now (it is preparing for an upgrade). The other servers still serve.".to_owned(),
                vec![],
                None,
                None,
            ),
            ApiError::CallElsewhere => {
                retry_after = Some(2);
                (
                    "call_moving",
                    "Cuộc gọi đang được chuyển sang máy chủ khác. Trang sẽ tự kết nối lại sau vài giây.".to_owned(),
                    "The call is moving to another server. The page reconnects by itself in a few seconds.".to_owned(),
                    vec![],
                    None,
                    None,
                )
            }
            ApiError::Busy { retry_after_secs } => {
                retry_after = Some(retry_after_secs);
                (
                    "busy",
                    "Máy chủ đang bận vì có quá nhiều lượt đăng nhập cùng lúc. Hãy đợi vài giây rồi bấm lại."
                        .to_owned(),
                    "The server is busy with too many sign-ins at once. Wait a few seconds and try again."
                        .to_owned(),
                    vec![],
                    None,
                    None,
                )
            }
            ApiError::StorageFull => (
                "storage_full",
                "Máy chủ đã hết chỗ lưu dữ liệu nên chưa lưu được. Những gì bạn đã nhập vẫn còn trên màn hình: báo bộ phận CNTT giải phóng dung lượng rồi bấm lưu lại.".to_owned(),
                "The server's disk is full, so nothing was saved. What you typed is still on the screen: ask IT to free space, then save again.".to_owned(),
                vec![],
                None,
                None,
            ),
            ApiError::Unavailable => {
                retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
                (
                "database_unavailable",
                "Không kết nối được cơ sở dữ liệu. Hãy thử lại sau ít phút.".to_owned(),
                "The database cannot be reached. Try again in a few minutes.".to_owned(),
                vec![],
                None,
                None,
            )
            }
        };
        let body = Problem {
            kind: format!("/problems/{code}"),
            title,
            status: status.as_u16(),
            code,
            detail,
            detail_en,
            errors,
            current_version,
            incident_id,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, json).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// `Retry-After` on a 503 `database_unavailable`: the pages retry on
/// their own; a restarting database is back in seconds.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::Invalid(errs) => ApiError::Invalid(errs),
            RecordsError::NotFound(what) => ApiError::NotFound(what),
            RecordsError::Duplicate(value) => {
                use telehealth_records::Unique;
                let (vi, en) = match value {
                    Unique::Cccd => ("Số CCCD này đã được đăng ký cho một bệnh nhân khác. Hãy tìm bệnh nhân theo số CCCD.", "This CCCD is already registered to another patient. Search for the patient by CCCD."),
                    Unique::Username => ("Tên đăng nhập này đã có người dùng.", "This username is taken."),
                    Unique::FacilityCode => ("Mã cơ sở này đã tồn tại.", "This facility code already exists."),
                    Unique::ConsultationNote => ("Ca tư vấn này đã có ghi chú; hãy mở ghi chú đó để sửa.", "This consultation already has a note; open it instead."),
                    Unique::NoteAmendment => ("Ghi chú này đã có bản sửa đổi; hãy sửa đổi phiên bản mới nhất.", "This note already has an amendment; amend the latest version."),
                    Unique::Slot => ("Giờ này vừa có người đặt. Hãy chọn giờ khác.", "This time was just booked. Choose another."),
                    Unique::ConsentSeq => ("Một người khác vừa ghi nhận sự đồng ý của bệnh nhân này. Hãy tải lại trang để xem.", "Someone else just recorded this patient's consent. Reload the page to see it."),
                };
                ApiError::Conflict {
                    code: "duplicate",
                    detail: vi.to_owned(),
                    detail_en: en.to_owned(),
                    current_version: None,
                    errors: vec![FieldError::new(value.field(), "duplicate", vi, en)],
                }
            }
            RecordsError::VersionConflict { current } => ApiError::Conflict {
                code: "version_conflict",
                detail: "Bản ghi đã được thay đổi ở nơi khác (một thẻ hoặc máy khác). Tải lại để xem bản mới nhất trước khi lưu.".into(),
                detail_en: "The record was changed elsewhere (another tab or device). Reload the latest version before saving.".into(),
                current_version: Some(current),
                errors: vec![],
            },
            RecordsError::Immutable(_) => ApiError::Conflict {
                code: "note_signed",
                detail: "Ghi chú đã ký thì không sửa được. Hãy tạo bản sửa đổi.".into(),
                detail_en: "A signed note cannot be changed. Create an amendment instead.".into(),
                current_version: None,
                errors: vec![],
            },
            RecordsError::IllegalTransition { from, to } => ApiError::Conflict {
                code: "illegal_transition",
                detail: format!("Không thể chuyển ca tư vấn từ trạng thái “{from}” sang “{to}”."),
                detail_en: format!("A consultation cannot go from {from} to {to}."),
                current_version: None,
                errors: vec![],
            },
            RecordsError::AlreadyTaken(what) => {
                use telehealth_records::Contested;
                let (code, vi, en) = match what {
                    Contested::NoteAmendment => (
                        "already_taken",
                        "Ghi chú này đã có bản sửa đổi; hãy sửa đổi phiên bản mới nhất.",
                        "This note already has an amendment; amend the latest version.",
                    ),
                    Contested::Slot => (
                        "slot_unavailable",
                        "Giờ này không còn trống (đã có lịch, bác sĩ nghỉ hoặc ngoài giờ làm việc). Hãy chọn giờ khác.",
                        "This time is not available (booked, on leave or outside working hours). Choose another.",
                    ),
                    Contested::Consent => (
                        "already_taken",
                        "Một người khác vừa ghi nhận sự đồng ý của bệnh nhân này. Hãy tải lại trang để xem.",
                        "Someone else just recorded this patient's consent. Reload the page to see it.",
                    ),
                    Contested::Consultation => ("already_taken", "Một bác sĩ khác đã nhận ca này trước.", "Another doctor took this consultation first."),
                };
                ApiError::Conflict {
                    code,
                    detail: vi.into(),
                    detail_en: en.into(),
                    current_version: None,
                    errors: vec![],
                }
            }
            RecordsError::Consent(problem) => {
                let (code, vi, en) = match problem {
                    telehealth_records::ConsentProblem::Missing => (
                        "consent_required",
                        "Chưa ghi nhận sự đồng ý của bệnh nhân. Hãy đọc nội dung đồng ý cho bệnh nhân (hoặc người giám hộ), ghi nhận ở trang bệnh nhân, rồi yêu cầu tư vấn.",
                        "The patient's consent is not on file. Read the consent text to the patient (or guardian), record it on the patient's page, then ask for the consultation.",
                    ),
                    telehealth_records::ConsentProblem::Withdrawn => (
                        "consent_withdrawn",
                        "Bệnh nhân đã rút lại sự đồng ý khám từ xa, nên không tạo được ca tư vấn. Nếu bệnh nhân đồng ý lại, hãy ghi nhận ở trang bệnh nhân.",
                        "The patient has withdrawn consent to remote consultation, so no consultation can be made. If they agree again, record it on the patient's page.",
                    ),
                };
                ApiError::Conflict {
                    code,
                    detail: vi.into(),
                    detail_en: en.into(),
                    current_version: None,
                    errors: vec![FieldError::new("patient_id", code, vi, en)],
                }
            }
            e if e.is_unavailable() => {
                crate::metrics::global().database_errors.inc();
                ApiError::Unavailable
            }
            e if e.is_storage_full() => {
                crate::metrics::global().database_errors.inc();
                tracing::error!("the database's disk is full: writes are refused until space is freed");
                ApiError::StorageFull
            }
            RecordsError::Database(e) => {
                crate::metrics::global().database_errors.inc();
                ApiError::Internal(e.to_string())
            }
            RecordsError::Corrupt(e) => {
                crate::metrics::global().database_errors.inc();
                ApiError::Internal(e)
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
