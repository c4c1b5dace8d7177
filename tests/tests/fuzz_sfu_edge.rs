//! Fuzz targets for the SFU's signaling edge: an offer made of a real one
//! edited line by line (lines dropped, replaced, inserted, cut short), and
//! trickled candidates of any text, against a running SFU. Every input is
//! answered (an answer or an error) within seconds, and the SFU is still
//! running after it. Under nextest these replay their corpus
//! (`tests/__fuzz__/`) and a second of random inputs; see docs/FUZZING.md
//! for the long runs.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;
use telehealth_sfu::{IceCandidate, ParticipantId, Sfu, SfuError};
use telehealth_tests::{leaves_host, ParticipantConfig, SyntheticParticipant};

/// One edit of the offer: `op` drops the line at `line`, replaces it with
/// `text`, inserts `text` before it, or cuts it to `text`'s length.
type Edit = (u8, u16, String);

fn edited(offer: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = offer.lines().map(str::to_owned).collect();
    for (op, line, text) in edits {
        if lines.is_empty() {
            lines.push(text.clone());
            continue;
        }
        let i = usize::from(*line) % lines.len();
        match op % 4 {
            0 => {
                lines.remove(i);
            }
            1 => lines[i] = text.clone(),
            2 => lines.insert(i, text.clone()),
            _ => {
                let cut = lines[i]
                    .char_indices()
                    .nth(text.len())
                    .map_or(lines[i].len(), |(at, _)| at);
                lines[i].truncate(cut);
            }
        }
    }
    let mut sdp = lines.join("\r\n");
    sdp.push_str("\r\n");
    sdp
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The SFU answers within this, or it is stuck.
const ANSWERED: Duration = Duration::from_secs(10);

async fn still_running(sfu: &Sfu, what: &str) {
    let r = tokio::time::timeout(ANSWERED, sfu.counters()).await;
    assert!(matches!(r, Ok(Ok(_))), "the SFU stopped answering after {what}");
}

#[test]
fn offer_and_candidates() {
    let rt = runtime();
    let (sfu, room, offer) = rt.block_on(async {
        let sfu = common::start_sfu().await;
        let room = common::room(&sfu, "consultation-fuzz").await;
        let p = SyntheticParticipant::new(ParticipantConfig::new("station", 440.0))
            .await
            .expect("participant");
        let offer = p.create_offer().await.expect("offer");
        (sfu, room, offer)
    });
    let mut n = 0u64;
    let state = AssertUnwindSafe((&rt, &sfu, &room, &offer));
    bolero::check!()
        .with_type::<(Vec<Edit>, Vec<(String, u8)>)>()
        .for_each(move |(edits, candidates)| {
            let (rt, sfu, room, offer) = *state;
            if edits.iter().any(|(_, _, t)| leaves_host(t)) || candidates.iter().any(|(t, _)| leaves_host(t))
            {
                return;
            }
            n += 1;
            let who = ParticipantId::new(format!("fuzz-{n}"));
            let sdp = edited(offer, edits);
            rt.block_on(async {
                let r = tokio::time::timeout(ANSWERED, sfu.join(room.clone(), who.clone(), sdp))
                    .await
                    .expect("an offer is answered or refused within seconds");
                assert!(!matches!(r, Err(SfuError::Stopped)), "the SFU died on an offer");
                for (text, mline) in candidates {
                    let c = IceCandidate {
                        candidate: text.clone(),
                        sdp_mid: Some(mline.to_string()),
                        sdp_mline_index: Some(u16::from(*mline)),
                        username_fragment: None,
                    };
                    let r =
                        tokio::time::timeout(ANSWERED, sfu.add_ice_candidate(room.clone(), who.clone(), c))
                            .await
                            .expect("a candidate is taken or refused within seconds");
                    assert!(
                        !matches!(r, Err(SfuError::Stopped)),
                        "the SFU died on a candidate"
                    );
                }
                if r.is_ok() {
                    let _ = sfu.leave(room.clone(), who).await;
                }
                still_running(sfu, "an offer").await;
            });
        });
}

/// A candidate of any text, with a mid and ufrag of any text, for a
/// participant that joined with a real offer.
#[test]
fn candidates_for_a_real_participant() {
    let rt = runtime();
    let (sfu, room) = rt.block_on(async {
        let sfu = common::start_sfu().await;
        let room = common::room(&sfu, "consultation-fuzz").await;
        let p = SyntheticParticipant::new(ParticipantConfig::new("station", 440.0))
            .await
            .expect("participant");
        let offer = p.create_offer().await.expect("offer");
        sfu.join(room.clone(), ParticipantId::new("station"), offer)
            .await
            .expect("a real offer is accepted");
        (sfu, room)
    });
    let state = AssertUnwindSafe((&rt, &sfu, &room));
    bolero::check!()
        .with_type::<(String, Option<String>, Option<u16>, Option<String>)>()
        .for_each(move |(candidate, mid, mline, ufrag)| {
            let (rt, sfu, room) = *state;
            if leaves_host(candidate) {
                return;
            }
            rt.block_on(async {
                let c = IceCandidate {
                    candidate: format!("candidate:{candidate}"),
                    sdp_mid: mid.clone(),
                    sdp_mline_index: *mline,
                    username_fragment: ufrag.clone(),
                };
                let r = tokio::time::timeout(
                    ANSWERED,
                    sfu.add_ice_candidate(room.clone(), ParticipantId::new("station"), c),
                )
                .await
                .expect("a candidate is taken or refused within seconds");
                assert!(
                    !matches!(r, Err(SfuError::Stopped)),
                    "the SFU died on a candidate"
                );
            });
        });
    rt.block_on(still_running(&sfu, "the candidates"));
}
