//! Login, tokens and the authenticated-user extractor.
//!
//! A login creates a session row holding the hash of a random refresh token
//! (12 h by default, rotated on each use) and returns a short-lived HS256 JWT
//! access token (15 min) naming the user and the session. Browsers get both
//! as HttpOnly, SameSite=Strict cookies; API clients read them from the body
//! and send `Authorization: Bearer`. Each request checks that the session is
//! still live and the account active, so logout and deactivation act at once.
//!
//! Repeated failures for one username or one address are slowed down, then
//! refused for a while (in memory, per node).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use telehealth_records::{Actor, AuthSessionId, FacilityId, Outcome, Role, Timestamp, User, UserId};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientAddr};
use crate::state::AppState;

const ACCESS_COOKIE: &str = "th_access";
const REFRESH_COOKIE: &str = "th_refresh";

/// Signing keys and token lifetimes.
pub struct AuthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Signs the audit chain's head (derived from the same secret, for no other use).
    anchor_key: [u8; 32],
    pub access_ttl: chrono::Duration,
    pub session_ttl: chrono::Duration,
}

impl AuthKeys {
    pub fn new(secret: &[u8], access_ttl: chrono::Duration, session_ttl: chrono::Duration) -> Self {
        let mut anchor = Sha256::new();
        anchor.update(b"telehealth audit anchor\0");
        anchor.update(secret);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            anchor_key: anchor.finalize().into(),
            access_ttl,
            session_ttl,
        }
    }

    /// HMAC-SHA256 (hex) of an audit chain head `id:hash`: that this server
    /// stated it, for whoever keeps the anchor outside the database.
    pub fn sign_anchor(&self, id: i64, hash: &str) -> String {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.anchor_key).expect("HMAC accepts any key length");
        mac.update(format!("{id}:{hash}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Claims {
    sub: UserId,
    sid: AuthSessionId,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    fid: Option<FacilityId>,
    iat: i64,
    exp: i64,
}

/// Password hashing is the costliest work a stranger can make the server do:
/// argon2id takes 19 MiB and tens of milliseconds of a core per login, by
/// design, and unknown usernames are hashed too. On tokio's blocking pool, 150
/// logins at once took the process to 3.8 GiB; taken in turn there, still to
/// 550 MiB: each new pool thread got an allocator arena of its own and kept
/// its 19 MiB. So hashing runs on a few threads of its own, one per core, and
/// the other logins wait their turn, at most [`HASH_QUEUE_MAX`] of them and
/// each for at most [`HASH_QUEUE_WAIT`]; beyond that the answer is 503 "busy"
/// with a `Retry-After`, and calls, notes and everything else go on.
struct HashGate {
    turns: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HashGate {
    fn start() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = job else { return };
                    // A panic ends the job (its caller gets an error), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self {
            turns: std::sync::Arc::new(tokio::sync::Semaphore::new(threads)),
            waiting: Default::default(),
            jobs,
        }
    }
}

/// How many logins may wait for a hashing turn.
pub const HASH_QUEUE_MAX: usize = 256;
/// How long a login waits for a hashing turn before it is told to come back.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(5);
const HASH_RETRY_AFTER_SECS: u64 = 5;

/// Runs `f` (an argon2 hash or verification) on a hashing thread, in turn
/// (see [`HashGate`]). The turn is held until `f` ends, even when the request
/// that asked for it has gone.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    use std::sync::atomic::Ordering;
    static GATE: std::sync::OnceLock<HashGate> = std::sync::OnceLock::new();
    let gate = GATE.get_or_init(HashGate::start);
    let busy = ApiError::Busy {
        retry_after_secs: HASH_RETRY_AFTER_SECS,
    };
    if gate.waiting.fetch_add(1, Ordering::SeqCst) >= HASH_QUEUE_MAX {
        gate.waiting.fetch_sub(1, Ordering::SeqCst);
        return Err(busy);
    }
    let turn = tokio::time::timeout(HASH_QUEUE_WAIT, gate.turns.clone().acquire_owned()).await;
    gate.waiting.fetch_sub(1, Ordering::SeqCst);
    let Ok(Ok(turn)) = turn else {
        tracing::warn!("password hashing busy: a login was turned away");
        return Err(busy);
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    gate.jobs
        .send(Box::new(move || {
            let _turn = turn;
            let _ = tx.send(f());
        }))
        .map_err(|_| ApiError::Internal("password hashing threads are gone".into()))?;
    rx.await
        .map_err(|_| ApiError::Internal("password hashing failed".into()))
}

thread_local! {
    /// The argon2 working memory of this hashing thread (19 MiB by default),
    /// kept from one hash to the next. Allocated afresh each time, the heap
    /// ratcheted up: other allocations settled in the freed space, the next
    /// 19 MiB did not fit, and 500 logins at once left 400 MiB behind.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The raw argon2 output for `password` with `salt`, in this thread's memory.
fn argon2_raw(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    ARGON2_MEMORY.with_borrow_mut(|blocks| {
        let need = argon.params().block_count();
        if blocks.len() != need {
            *blocks = vec![argon2::Block::default(); need];
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
    })
}

/// A new argon2id hash of `password` in PHC string form (what
/// `Argon2::default().hash_password` makes, in reused memory).
fn argon2_hash(password: &[u8]) -> Result<String, String> {
    let argon = Argon2::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| e.to_string())?;
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    argon2_raw(&argon, password, salt_bytes, &mut out).map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: argon
            .params()
            .try_into()
            .map_err(|e: argon2::password_hash::Error| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (compared in constant time).
fn argon2_verify(hash: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        argon2::Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| argon2::Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon2_raw(&argon, password, salt_bytes, &mut out).is_ok()
        && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// Hashes a password with argon2id (slow on purpose; in turn, see [`hashing`]).
pub async fn hash_password(password: String) -> ApiResult<String> {
    hashing(move || argon2_hash(password.as_bytes()).map_err(|e| ApiError::Internal(format!("argon2: {e}"))))
        .await?
}

async fn verify_password(hash: Option<String>, password: String) -> ApiResult<bool> {
    // With no account, verify against a fixed hash anyway so that the answer
    // takes as long as for a real account (no username probing by timing).
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    hashing(move || {
        let known = hash.is_some();
        let h = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| argon2_hash(b"no such account").unwrap_or_default())
                .clone()
        });
        argon2_verify(&h, password.as_bytes()) && known
    })
    .await
}

/// Checks a new password is one a person can keep and an attacker cannot guess easily.
pub fn check_password_rules(pw: &str) -> Result<(), telehealth_records::FieldError> {
    let weak = |vi: &'static str, en: &'static str| {
        telehealth_records::FieldError::new("password", "weak_password", vi, en)
    };
    if pw.chars().count() < 10 || pw.chars().count() > 200 {
        return Err(weak(
            "Mật khẩu cần từ 10 đến 200 ký tự.",
            "A password needs 10 to 200 characters.",
        ));
    }
    if pw.chars().any(char::is_control) {
        return Err(weak(
            "Mật khẩu không được chứa ký tự điều khiển (như Tab hay xuống dòng).",
            "A password cannot contain control characters (such as Tab or a line break).",
        ));
    }
    if pw.chars().filter(|c| !c.is_whitespace()).count() < 6 {
        return Err(weak(
            "Mật khẩu phải có ít nhất 6 ký tự không phải dấu cách.",
            "A password needs at least 6 characters that are not spaces.",
        ));
    }
    Ok(())
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The logged-in user of a request.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub session: AuthSessionId,
    pub addr: Option<String>,
}

impl AuthUser {
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, self.user.role, self.addr.clone())
    }
    pub fn role(&self) -> Role {
        self.user.role
    }
}

/// The access token a request carries: a bearer token, else the cookie.
pub fn access_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| cookie(headers, ACCESS_COOKIE))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

const NOT_LOGGED_IN: ApiError = ApiError::Unauthorized {
    code: "not_logged_in",
    detail: "Bạn chưa đăng nhập hoặc phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại.",
    detail_en: "You are not logged in, or your login expired. Please log in again.",
};

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = access_token(&parts.headers).ok_or(NOT_LOGGED_IN)?;
        let claims = decode_access(state, token)?;
        let user = state
            .store
            .session_user(claims.sid)
            .await?
            .ok_or(ApiError::Unauthorized {
            code: "session_ended",
            detail:
                "Phiên đăng nhập đã kết thúc (đã đăng xuất hoặc tài khoản bị khóa). Vui lòng đăng nhập lại.",
            detail_en: "This login has ended (logged out or account disabled). Please log in again.",
        })?;
        if user.id != claims.sub {
            return Err(NOT_LOGGED_IN);
        }
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state)
            .await
            .unwrap_or(ClientAddr(None));
        Ok(AuthUser {
            user,
            session: claims.sid,
            addr,
        })
    }
}

/// How far in the future a token's issue time may be (clocks drift).
const ISSUED_AHEAD: i64 = 60;

fn decode_access(state: &AppState, token: &str) -> ApiResult<Claims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 5;
    v.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &state.auth.decoding, &v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => ApiError::Unauthorized {
                code: "token_expired",
                detail: "Phiên làm việc đã hết hạn. Hãy làm mới hoặc đăng nhập lại.",
                detail_en: "The access token expired. Refresh it or log in again.",
            },
            _ => ApiError::Unauthorized {
                code: "invalid_token",
                detail: "Mã đăng nhập không hợp lệ. Vui lòng đăng nhập lại.",
                detail_en: "The access token is invalid. Please log in again.",
            },
        })?;
    // Issued "later than now": the server's clock went back (a wrong
    // hardware clock corrected, a restored snapshot). Its expiry is as far
    // off as the clock went back, so it would outlive its 15 minutes; it is
    // refused as expired, and the page refreshes it.
    if claims.iat > chrono::Utc::now().timestamp() + ISSUED_AHEAD {
        return Err(ApiError::Unauthorized {
            code: "token_expired",
            detail: "Phiên làm việc đã hết hạn. Hãy làm mới hoặc đăng nhập lại.",
            detail_en: "The access token expired. Refresh it or log in again.",
        });
    }
    Ok(claims)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize, JsonSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: TokenType,
    expires_in: i64,
    refresh_token: String,
    user: User,
}

/// How the access token is presented (RFC 6750).
#[derive(Debug, Serialize, JsonSchema)]
pub enum TokenType {
    /// `Authorization: Bearer <access_token>`.
    Bearer,
}

/// New tokens: the body for a client that keeps them itself, and the same
/// tokens as HttpOnly cookies for the browser.
pub struct Issued {
    body: TokenResponse,
    cookies: [HeaderValue; 2],
}

impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        let mut resp = (StatusCode::OK, Json(self.body)).into_response();
        for c in self.cookies {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        resp.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        resp
    }
}

impl crate::api::contract::ResponseContract for Issued {
    fn body() -> crate::api::contract::ResponseBody {
        crate::api::contract::ResponseBody::json::<TokenResponse>()
    }
}

fn issue(state: &AppState, user: &User, session: AuthSessionId, refresh: String) -> ApiResult<Issued> {
    let now = chrono::Utc::now();
    let claims = Claims {
        sub: user.id,
        sid: session,
        role: user.role,
        fid: user.facility_id,
        iat: now.timestamp(),
        exp: (now + state.auth.access_ttl).timestamp(),
    };
    let access = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &state.auth.encoding)
        .map_err(|e| ApiError::Internal(format!("jwt: {e}")))?;
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let access_cookie = format!(
        "{ACCESS_COOKIE}={access}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.auth.access_ttl.num_seconds()
    );
    let refresh_cookie = format!(
        "{REFRESH_COOKIE}={refresh}; Path=/api/auth; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.auth.session_ttl.num_seconds()
    );
    let body = TokenResponse {
        access_token: access,
        token_type: TokenType::Bearer,
        expires_in: state.auth.access_ttl.num_seconds(),
        refresh_token: refresh,
        user: user.clone(),
    };
    let cookie = |c: String| HeaderValue::from_str(&c).map_err(|e| ApiError::Internal(e.to_string()));
    Ok(Issued {
        body,
        cookies: [cookie(access_cookie)?, cookie(refresh_cookie)?],
    })
}

/// The throttle's keys for a password attempt: the username and the client address.
fn throttle_keys(username: &str, addr: Option<&str>) -> [String; 2] {
    [format!("u:{username}"), format!("a:{}", addr.unwrap_or("?"))]
}

/// A throttled password check: the account (if any) and whether `password`
/// is its password. The attempt counts from its arrival, before the check,
/// so guesses sent all at once are refused once the limit is reached; one
/// that checked nothing (the server busy, the database away) is given back.
/// The caller reports the outcome (`succeeded`, `failed` or `release`).
async fn check_password(
    state: &AppState,
    keys: &[String; 2],
    username: &str,
    password: String,
) -> ApiResult<(Option<telehealth_records::UserCredentials>, bool)> {
    let delay = match state.throttle.begin(keys).await {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, ApiError::TooManyRequests { .. }) {
                crate::metrics::global().login_throttled.inc();
            }
            return Err(e);
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let checked = async {
        let creds = state.store.user_credentials(username).await?;
        let ok = verify_password(creds.as_ref().map(|c| c.password_hash.clone()), password).await?;
        Ok::<_, ApiError>((creds, ok))
    }
    .await;
    if checked.is_err() {
        state.throttle.release(keys).await;
    }
    checked
}

/// `POST /api/auth/login`
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Issued> {
    let username = req.username.trim().to_lowercase();
    let keys = throttle_keys(&username, addr.as_deref());
    let (creds, ok) = check_password(&state, &keys, &username, req.password).await?;
    let actor = Actor {
        user_id: creds.as_ref().map(|c| c.user.id),
        role: creds.as_ref().map(|c| c.user.role),
        client_addr: addr.clone(),
    };
    match creds {
        Some(c) if ok && c.user.is_active() => {
            state.throttle.succeeded(&keys).await;
            let refresh = random_token();
            let expires = Timestamp(chrono::Utc::now() + state.auth.session_ttl);
            let sid = state
                .store
                .create_auth_session(&actor, c.user.id, &token_hash(&refresh), expires)
                .await?;
            tracing::info!(user = %c.user.id, session = %sid, "login");
            issue(&state, &c.user, sid, refresh)
        }
        Some(c) if ok => {
            state.throttle.release(&keys).await;
            state
                .store
                .audit(
                    &actor,
                    "auth.login",
                    "user",
                    Some(c.user.id.to_string()),
                    None,
                    Outcome::Denied,
                )
                .await?;
            Err(ApiError::Forbidden {
                code: "account_disabled",
                detail: "Tài khoản đã bị khóa. Liên hệ quản trị viên.",
                detail_en: "This account is disabled. Contact an administrator.",
            })
        }
        _ => {
            state.throttle.failed(&keys).await;
            state
                .store
                .audit(
                    &actor,
                    "auth.login",
                    "user",
                    actor.user_id.map(|u| u.to_string()),
                    None,
                    Outcome::Denied,
                )
                .await?;
            tracing::info!(known_user = actor.user_id.is_some(), "login failed");
            Err(ApiError::Unauthorized {
                code: "wrong_credentials",
                detail: "Sai tên đăng nhập hoặc mật khẩu.",
                detail_en: "Wrong username or password.",
            })
        }
    }
}

/// Checks that `user` knows their current password before a change that
/// would let a stolen access token keep the account (a new password). Wrong
/// answers count with the login's failures (same lockout), and are audited.
pub async fn confirm_password(state: &AppState, user: &AuthUser, password: Option<String>) -> ApiResult<()> {
    let field = |code: &'static str, vi: &'static str, en: &'static str| {
        ApiError::Invalid(vec![telehealth_records::FieldError::new(
            "current_password",
            code,
            vi,
            en,
        )])
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(field(
            "current_password_required",
            "Nhập mật khẩu hiện tại của bạn để đổi mật khẩu.",
            "Enter your current password to change it.",
        ));
    };
    let keys = throttle_keys(&user.user.username, user.addr.as_deref());
    if check_password(state, &keys, &user.user.username, password)
        .await?
        .1
    {
        state.throttle.succeeded(&keys).await;
        return Ok(());
    }
    state.throttle.failed(&keys).await;
    state
        .store
        .audit(
            &user.actor(),
            "user.password_confirm",
            "user",
            Some(user.user.id.to_string()),
            None,
            Outcome::Denied,
        )
        .await?;
    Err(field(
        "wrong_current_password",
        "Mật khẩu hiện tại không đúng.",
        "The current password is wrong.",
    ))
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /api/auth/refresh`: swaps a refresh token (body or cookie) for new
/// tokens. An empty body is allowed (browsers send the cookie).
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiJsonOrEmpty(req): crate::extract::ApiJsonOrEmpty<RefreshRequest>,
) -> ApiResult<Issued> {
    let token = req
        .refresh_token
        .or_else(|| cookie(&headers, REFRESH_COOKIE).map(str::to_owned))
        .ok_or(NOT_LOGGED_IN)?;
    let new = random_token();
    let expires = Timestamp(chrono::Utc::now() + state.auth.session_ttl);
    let session = state
        .store
        .rotate_refresh_token(&token_hash(&token), &token_hash(&new), expires)
        .await?
        .ok_or(NOT_LOGGED_IN)?;
    let user = state.store.session_user(session.id).await?.ok_or(NOT_LOGGED_IN)?;
    issue(&state, &user, session.id, new)
}

/// `POST /api/auth/logout`: ends the session and clears the cookies.
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    state
        .store
        .revoke_auth_session(&user.actor(), user.session)
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in [
        format!("{ACCESS_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        format!("{REFRESH_COOKIE}=; Path=/api/auth; HttpOnly; SameSite=Strict; Max-Age=0"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// `GET /api/auth/me`
pub async fn me(user: AuthUser) -> Json<User> {
    Json(user.user)
}

/// Login-failure bookkeeping per username and per client address.
/// One node counts in memory; several nodes on PostgreSQL count in the
/// database, so that the lockout holds whichever node the attempts hit.
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    entries: Mutex<HashMap<String, Failures>>,
    shared: Option<telehealth_records::Store>,
}

/// How failures are punished.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures are counted over this window.
    pub window: Duration,
    /// From this many failures on, each attempt waits `step` more.
    pub slow_after: u32,
    pub step: Duration,
    /// At this many failures, attempts are refused for `lockout`.
    pub lock_after: u32,
    pub lockout: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            slow_after: 3,
            step: Duration::from_millis(500),
            lock_after: 10,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Counts in `store`, shared by every node using it.
    pub fn shared(policy: ThrottlePolicy, store: telehealth_records::Store) -> Self {
        Self {
            shared: Some(store),
            ..Self::new(policy)
        }
    }

    fn rules(&self) -> telehealth_records::ThrottleRules {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        telehealth_records::ThrottleRules {
            window_ms: ms(self.policy.window),
            lock_after: i64::from(self.policy.lock_after),
            lockout_ms: ms(self.policy.lockout),
        }
    }

    async fn begin(&self, keys: &[String]) -> ApiResult<Duration> {
        let Some(store) = &self.shared else {
            return self.begin_here(keys);
        };
        match store.throttle_begin(keys, self.rules()).await? {
            telehealth_records::ThrottleStart::Locked { retry_after_ms } => {
                tracing::warn!("login refused: locked after repeated failures");
                Err(ApiError::TooManyRequests {
                    retry_after_secs: u64::try_from(retry_after_ms / 1000).unwrap_or(0).max(1),
                })
            }
            telehealth_records::ThrottleStart::Go { failures_before } => {
                let n = u32::try_from(failures_before).unwrap_or(u32::MAX);
                let delay = if n >= self.policy.slow_after {
                    self.policy.step * (n - self.policy.slow_after + 1)
                } else {
                    Duration::ZERO
                };
                Ok(delay.min(Duration::from_secs(5)))
            }
        }
    }

    async fn failed(&self, keys: &[String]) {
        crate::metrics::global().login_failures.inc();
        let Some(store) = &self.shared else {
            return self.failed_here(keys);
        };
        match store.throttle_failed(keys, self.rules()).await {
            Ok(true) => tracing::warn!("login locked after repeated failures"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot count a login failure"),
        }
    }

    async fn release(&self, keys: &[String]) {
        let Some(store) = &self.shared else {
            return self.release_here(keys);
        };
        if let Err(e) = store.throttle_release(keys).await {
            tracing::error!(error = %e, "cannot give a login attempt back");
        }
    }

    async fn succeeded(&self, keys: &[String]) {
        let Some(store) = &self.shared else {
            return self.succeeded_here(keys);
        };
        self.release(&keys[1..]).await;
        if let Err(e) = store.throttle_forget(&keys[0]).await {
            tracing::error!(error = %e, "cannot forget an account's login failures");
        }
    }

    /// Before checking a password: refuse if locked, else count the attempt
    /// (a failure until [`Self::succeeded`] or [`Self::release`] says
    /// otherwise) and say how long to wait. Counting here, not after the
    /// check, is what holds when many guesses arrive at once.
    fn begin_here(&self, keys: &[String]) -> ApiResult<Duration> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update;
        // the counters are still usable.
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bound memory under a spray of addresses: forget stale entries.
            map.retain(|_, f| {
                now.duration_since(f.first) < self.policy.window || f.locked_until.is_some_and(|u| u > now)
            });
        }
        for k in keys {
            if let Some(f) = map.get_mut(k) {
                if let Some(until) = f.locked_until {
                    if until > now {
                        return Err(ApiError::TooManyRequests {
                            retry_after_secs: (until - now).as_secs().max(1),
                        });
                    }
                    *f = Failures::new(now);
                }
                if now.duration_since(f.first) > self.policy.window {
                    *f = Failures::new(now);
                }
                if f.count >= self.policy.lock_after {
                    f.locked_until = Some(now + self.policy.lockout);
                    tracing::warn!(key_kind = &k[..1], "login locked after repeated failures");
                    return Err(ApiError::TooManyRequests {
                        retry_after_secs: self.policy.lockout.as_secs().max(1),
                    });
                }
            }
        }
        let mut delay = Duration::ZERO;
        for k in keys {
            let f = map.entry(k.clone()).or_insert_with(|| Failures::new(now));
            if f.count >= self.policy.slow_after {
                delay = delay.max(self.policy.step * (f.count - self.policy.slow_after + 1));
            }
            f.count += 1;
        }
        Ok(delay.min(Duration::from_secs(5)))
    }

    /// The password was wrong: the attempt counted in [`Self::begin`] stands,
    /// and the limit reached locks at once.
    fn failed_here(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if let Some(f) = map.get_mut(k) {
                if f.count >= self.policy.lock_after && f.locked_until.is_none() {
                    f.locked_until = Some(now + self.policy.lockout);
                    tracing::warn!(key_kind = &k[..1], "login locked after repeated failures");
                }
            }
        }
    }

    /// No password was checked after all: the attempt is not a failure.
    fn release_here(&self, keys: &[String]) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if let Some(f) = map.get_mut(k) {
                f.count = f.count.saturating_sub(1);
            }
        }
    }

    /// The right password: the account's failures are forgotten; the address's
    /// stand (less this attempt).
    fn succeeded_here(&self, keys: &[String]) {
        self.release_here(&keys[1..]);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&keys[0]);
    }
}

impl Failures {
    fn new(now: Instant) -> Self {
        Self {
            count: 0,
            first: now,
            locked_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_in_reused_memory_match_the_standard_ones() {
        let ours = argon2_hash("mật khẩu".as_bytes()).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password("mật khẩu".as_bytes(), &parsed)
            .is_ok());
        assert!(Argon2::default().verify_password(b"other", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let standard = Argon2::default()
            .hash_password(b"hunter42", &salt)
            .unwrap()
            .to_string();
        assert!(argon2_verify(&standard, b"hunter42"));
        assert!(!argon2_verify(&standard, b"hunter43"));
        // Another thread, and the memory kept from the first hash: still right.
        assert!(argon2_verify(&ours, "mật khẩu".as_bytes()));
        assert!(!argon2_verify("not a hash", b"x"));
        assert!(!argon2_verify(
            &ours.replace("$argon2id$", "$argon2i$"),
            "mật khẩu".as_bytes()
        ));
    }
}
