//! One consultation under load: a doctor and a health worker, each
//! publishing to and receiving from the other, through our signaling socket
//! and SFU or through Janus's VideoRoom.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use telehealth_tests::api::{login, post};
use telehealth_tests::janus_link::{self, JanusParticipant};
use telehealth_tests::{ParticipantConfig, ParticipantReport, TrackReport, WsSession};

use crate::server::{Endpoint, Server};

/// Tones the two sides publish (the receiver checks it hears the right one).
pub const DOCTOR_TONE_HZ: f64 = 440.0;
pub const WORKER_TONE_HZ: f64 = 660.0;

/// How long a join may take before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A consultation's call.
pub enum Call {
    Ours {
        doctor: WsSession,
        worker: WsSession,
    },
    Janus {
        doctor: JanusParticipant,
        worker: JanusParticipant,
    },
}

/// What one side has received from the other so far.
pub struct Leg {
    /// The receiving side: `doctor` or `worker`.
    pub to: &'static str,
    /// The tone the other side publishes.
    pub tone_hz: f64,
    pub audio: Option<TrackReport>,
    pub video: Option<TrackReport>,
}

/// The received audio and video of a Janus subscriber connection (it
/// carries the one feed it subscribed to; the newest track of each kind).
fn janus_tracks(r: Option<ParticipantReport>) -> (Option<TrackReport>, Option<TrackReport>) {
    let Some(r) = r else { return (None, None) };
    let pick = |audio: bool| {
        r.tracks
            .iter()
            .filter(|t| t.audio == audio)
            .max_by_key(|t| (!t.ended, t.packets_received))
            .cloned()
    };
    (pick(true), pick(false))
}

impl Call {
    /// Both legs: what the doctor received from the worker, and back.
    pub fn legs(&self) -> [Leg; 2] {
        let ((da, dv), (wa, wv)) = match self {
            Call::Ours { doctor, worker } => {
                let (rd, rw) = (doctor.participant.report(), worker.participant.report());
                (
                    (
                        rd.audio_from(&worker.participant_id).cloned(),
                        rd.video_from(&worker.participant_id).cloned(),
                    ),
                    (
                        rw.audio_from(&doctor.participant_id).cloned(),
                        rw.video_from(&doctor.participant_id).cloned(),
                    ),
                )
            }
            Call::Janus { doctor, worker } => {
                (janus_tracks(doctor.received()), janus_tracks(worker.received()))
            }
        };
        [
            Leg {
                to: "doctor",
                tone_hz: WORKER_TONE_HZ,
                audio: da,
                video: dv,
            },
            Leg {
                to: "worker",
                tone_hz: DOCTOR_TONE_HZ,
                audio: wa,
                video: wv,
            },
        ]
    }

    /// Ours: the consultation's id.
    pub fn consultation_id(&self) -> Option<&str> {
        match self {
            Call::Ours { doctor, .. } => Some(doctor.consultation_id()),
            Call::Janus { .. } => None,
        }
    }

    /// Drops the delay samples so far (the warm-up).
    pub fn reset_delays(&self) {
        match self {
            Call::Ours { doctor, worker } => {
                doctor.participant.reset_delays();
                worker.participant.reset_delays();
            }
            Call::Janus { doctor, worker } => {
                for p in [doctor, worker] {
                    if let Some(s) = &p.subscriber {
                        s.reset_delays();
                    }
                }
            }
        }
    }

    /// Ends the call.
    pub async fn close(self) {
        match self {
            Call::Ours { doctor, worker } => {
                doctor.send(json!({"type": "end"}));
                tokio::time::sleep(Duration::from_millis(50)).await;
                doctor.participant.close().await;
                worker.participant.close().await;
            }
            Call::Janus { doctor, worker } => {
                doctor.leave().await;
                worker.leave().await;
            }
        }
    }
}

/// Sets up consultations on one server.
pub enum Joiner {
    Ours {
        http: reqwest::Client,
        base: String,
        ws_url: String,
        /// A doctor and a health worker per concurrent consultation (the
        /// server caps each user's open sockets, as a province's would
        /// have one doctor per call): consultation `i` uses pair `i % len`.
        pairs: Vec<Pair>,
        password: String,
        patient: Value,
    },
    Janus {
        http: reqwest::Client,
        url: String,
        room_base: u64,
    },
}

/// A doctor and a health worker: usernames and current access tokens
/// (renewed by [`Joiner::renew_logins`]: they last 15 minutes).
pub struct Pair {
    users: (String, String),
    tokens: std::sync::RwLock<(String, String)>,
}

/// Polls (cheaply: a report decodes nothing, but it does analyse the audio)
/// until `probe` sees the first video packet; returns when it arrived.
async fn first_video(mut probe: impl FnMut() -> Option<Instant>) -> Result<Instant> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        if let Some(at) = probe() {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("no video within {JOIN_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Joiner {
    /// For our server: one hospital and station, `pairs` doctors and
    /// health workers, and a patient, shared by every consultation. For
    /// Janus: nothing yet.
    pub async fn new(server: &Server, http: &reqwest::Client, pairs: usize) -> Result<Joiner> {
        match &server.endpoint {
            Endpoint::Janus { url } => Ok(Joiner::Janus {
                http: http.clone(),
                url: url.clone(),
                room_base: 1000 + u64::from(rand::random::<u16>()) * 1000,
            }),
            Endpoint::Ours { base, admin_password } => {
                let admin = login(http, base, "admin", admin_password).await?;
                let tag = format!("{:x}", rand::random::<u32>());
                let password = format!("load-{tag}-password");
                let h = post(http, base, Some(&admin), "/api/facilities", json!({"code": format!("LOAD-H-{tag}"), "name": "Load hospital", "kind": "district_hospital", "province": "Load"})).await?;
                let st = post(http, base, Some(&admin), "/api/facilities", json!({"code": format!("LOAD-S-{tag}"), "name": "Load station", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Load"})).await?;
                let mut made = Vec::new();
                for k in 0..pairs.max(1) {
                    let (du, wu) = (format!("load.doc.{tag}.{k}"), format!("load.hw.{tag}.{k}"));
                    post(http, base, Some(&admin), "/api/users", json!({"username": du, "display_name": format!("Load doctor {k}"), "password": password, "role": "doctor", "facility_id": h["id"]})).await?;
                    post(http, base, Some(&admin), "/api/users", json!({"username": wu, "display_name": format!("Load worker {k}"), "password": password, "role": "health_worker", "facility_id": st["id"]})).await?;
                    let doctor = login(http, base, &du, &password).await?;
                    let worker = login(http, base, &wu, &password).await?;
                    made.push(Pair {
                        users: (du, wu),
                        tokens: std::sync::RwLock::new((doctor, worker)),
                    });
                }
                let worker = made[0].tokens.read().expect("tokens").1.clone();
                let patient = post(
                    http,
                    base,
                    Some(&worker),
                    "/api/patients",
                    json!({"full_name": "Load", "date_of_birth": "1990-01-01", "sex": "other"}),
                )
                .await?;
                telehealth_tests::api::consent(http, base, &worker, patient["id"].as_str().context("id")?)
                    .await?;
                Ok(Joiner::Ours {
                    http: http.clone(),
                    base: base.clone(),
                    ws_url: format!("{}/api/ws", base.replacen("http", "ws", 1)),
                    pairs: made,
                    password,
                    patient,
                })
            }
        }
    }

    /// Ours: logs every doctor and health worker in again (an access
    /// token lasts 15 minutes; a soak runs for an hour). Janus: nothing.
    pub async fn renew_logins(&self) -> Result<()> {
        if let Joiner::Ours {
            http,
            base,
            pairs,
            password,
            ..
        } = self
        {
            for p in pairs {
                let doctor = login(http, base, &p.users.0, password).await?;
                let worker = login(http, base, &p.users.1, password).await?;
                *p.tokens.write().expect("tokens") = (doctor, worker);
            }
        }
        Ok(())
    }

    /// Ours: the server's base URL and the current access token of the
    /// doctor of consultation `i`.
    pub fn doctor(&self, i: usize) -> Option<(&reqwest::Client, &str, String)> {
        match self {
            Joiner::Ours {
                http, base, pairs, ..
            } => Some((
                http,
                base.as_str(),
                pairs[i % pairs.len()].tokens.read().expect("tokens").0.clone(),
            )),
            Joiner::Janus { .. } => None,
        }
    }

    /// Sets up consultation `i` and waits until the doctor sees the health
    /// worker's video. Returns the call and the join time: from the moment
    /// the health worker (the second to join) starts joining to the doctor
    /// receiving its first video packet, in ms.
    pub async fn join(
        &self,
        i: usize,
        config: impl Fn(&str, f64) -> ParticipantConfig,
    ) -> Result<(Call, f64)> {
        match self {
            Joiner::Ours {
                http,
                base,
                ws_url,
                pairs,
                patient,
                ..
            } => {
                let (doctor, worker) = pairs[i % pairs.len()].tokens.read().expect("tokens").clone();
                let (doctor, worker) = (doctor.as_str(), worker.as_str());
                let c = post(
                    http,
                    base,
                    Some(worker),
                    "/api/consultations",
                    json!({"patient_id": patient["id"], "kind": "urgent", "reason": "load"}),
                )
                .await?;
                let cid = c["id"].as_str().context("id")?.to_owned();
                post(
                    http,
                    base,
                    Some(doctor),
                    &format!("/api/consultations/{cid}/accept"),
                    json!({}),
                )
                .await?;
                let d =
                    WsSession::join(ws_url, doctor, &cid, config(&format!("d{i}"), DOCTOR_TONE_HZ)).await?;
                let t0 = Instant::now();
                let w =
                    WsSession::join(ws_url, worker, &cid, config(&format!("w{i}"), WORKER_TONE_HZ)).await?;
                let at = first_video(|| {
                    d.participant
                        .report()
                        .video_from(&w.participant_id)
                        .map(|v| v.first_packet_at)
                })
                .await?;
                let ms = at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
                Ok((Call::Ours { doctor: d, worker: w }, ms))
            }
            Joiner::Janus { http, url, room_base } => {
                let room = room_base + i as u64;
                janus_link::create_room(http, url, room).await?;
                let mut d =
                    JanusParticipant::join(http, url, room, config(&format!("d{i}"), DOCTOR_TONE_HZ)).await?;
                let t0 = Instant::now();
                // As browsers do: the worker subscribes to the publisher it
                // finds on joining; the doctor, on the `publishers` event.
                let (w, subscribed) = tokio::join!(
                    async {
                        let mut w =
                            JanusParticipant::join(http, url, room, config(&format!("w{i}"), WORKER_TONE_HZ))
                                .await?;
                        let feed = w.wait_for_publisher(JOIN_TIMEOUT).await?;
                        w.subscribe(feed).await?;
                        anyhow::Ok(w)
                    },
                    async {
                        let feed = d.wait_for_publisher(JOIN_TIMEOUT).await?;
                        d.subscribe(feed).await
                    }
                );
                let w = w?;
                subscribed?;
                let at = first_video(|| janus_tracks(d.received()).1.map(|v| v.first_packet_at)).await?;
                let ms = at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
                Ok((Call::Janus { doctor: d, worker: w }, ms))
            }
        }
    }
}
