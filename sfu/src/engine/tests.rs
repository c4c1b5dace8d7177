//! The engine without sockets or a real clock: in-memory `rtc` peers play
//! the browsers, datagrams move between them and the engine by hand, and
//! time advances only when nothing is left to move (to the next deadline of
//! the engine, a peer, or the publisher's camera). Seconds of a call run in
//! a fraction of that, and every run takes the same decisions: who receives
//! which track, from which keyframe, and when the publisher is asked for one.

use super::*;
use crate::interceptor::with_sfu_stages;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// The engine's media address (nothing is bound: the test moves the bytes).
const SFU: ([u8; 4], u16) = ([10, 0, 0, 1], 3478);
/// The publisher's camera: a frame every 50 ms, one packet each.
const FRAME: Duration = Duration::from_millis(50);

fn sfu_addr() -> SocketAddr {
    SFU.into()
}

/// A video packet a browser received.
#[derive(Debug, Clone, Copy)]
struct Got {
    ssrc: u32,
    /// It starts a keyframe.
    key: bool,
    /// The simulcast layer it was sent on (the publisher writes it into the
    /// payload; the SFU forwards every layer under one SSRC).
    layer: u8,
    at: Instant,
}

/// A browser: a peer connection publishing one VP8 track (simulcast: one
/// SSRC per layer, lowest first), and what it got.
struct Client {
    id: ParticipantId,
    addr: SocketAddr,
    pc: RTCPeerConnection,
    ssrcs: Vec<u32>,
    sender: RTCRtpSenderId,
    payload_type: Option<u8>,
    /// Negotiated ids of the MID and RID header extensions (simulcast).
    mid_rid: Option<(u8, u8)>,
    seqs: Vec<u16>,
    frames_sent: u32,
    /// Send a keyframe next (the first frame, and after each PLI).
    keyframe_due: bool,
    connected: bool,
    /// Video packets received, in order.
    video: Vec<Got>,
    /// Dropped on the way to it: a rate cap on its downlink (bits per
    /// second), and the bucket its packets draw on.
    cap: Option<(f64, f64, Instant)>,
    /// Keyframe requests (PLI) received.
    plis: usize,
}

impl Client {
    fn new(now: Instant, name: &str, host: u8, ssrcs: &[u32]) -> Self {
        let mut me = MediaEngine::default();
        me.register_default_codecs().expect("codecs");
        // The SFU's own stages: feedback (PLI) reaches the application, as
        // in a browser.
        let registry =
            register_default_interceptors(with_sfu_stages(Registry::new()).0, &mut me).expect("interceptors");
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .build(now)
            .expect("peer connection");
        let sender = pc
            .add_track(MediaStreamTrack::new(
                name.to_owned(),
                format!("{name}-camera"),
                format!("{name}-camera"),
                RtpCodecKind::Video,
                ssrcs
                    .iter()
                    .enumerate()
                    .map(|(i, &ssrc)| RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            rid: if ssrcs.len() > 1 {
                                ["q", "h", "f"][i].to_owned()
                            } else {
                                String::new()
                            },
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: RTCRtpCodec {
                            mime_type: MIME_TYPE_VP8.to_owned(),
                            clock_rate: 90_000,
                            channels: 0,
                            sdp_fmtp_line: String::new(),
                            rtcp_feedback: vec![],
                        },
                        ..Default::default()
                    })
                    .collect(),
            ))
            .expect("track");
        Self {
            id: ParticipantId::from(name.to_owned()),
            addr: ([10, 0, 1, host], 5000).into(),
            pc,
            ssrcs: ssrcs.to_vec(),
            sender,
            payload_type: None,
            mid_rid: None,
            seqs: vec![1; ssrcs.len()],
            frames_sent: 0,
            keyframe_due: true,
            connected: false,
            video: Vec::new(),
            cap: None,
            plis: 0,
        }
    }

    /// Its offer, with its host candidate.
    fn offer(&mut self, now: Instant) -> String {
        let offer = self.pc.create_offer(None).expect("offer");
        self.pc.set_local_description(now, offer).expect("local offer");
        let c = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.addr.ip().to_string(),
                port: self.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("host candidate");
        self.pc
            .add_local_candidate(RTCIceCandidate::from(&c).to_json().expect("json"))
            .expect("candidate");
        self.pc.local_description().expect("offer").sdp
    }

    /// One camera frame: one 1,000-byte packet on a single layer; on
    /// simulcast layers 1, 3 and 9 packets (about 160 kbps, 480 kbps and
    /// 1.4 Mbps at 20 frames a second). A keyframe on every layer when due.
    fn send_frame(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        if self.payload_type.is_none() {
            let Some(mut s) = self.pc.rtp_sender(self.sender) else {
                return;
            };
            let params = s.get_parameters();
            let Some(pt) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8))
                .map(|c| c.payload_type)
            else {
                return;
            };
            let ext = |uri: &str| {
                params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == uri)
                    .map(|e| e.id as u8)
            };
            self.mid_rid =
                ext(rtc::sdp::extmap::SDES_MID_URI).zip(ext(rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI));
            self.payload_type = Some(pt);
        }
        let pt = self.payload_type.expect("set above");
        let key = std::mem::take(&mut self.keyframe_due);
        let simulcast = self.ssrcs.len() > 1;
        let transceiver = self.pc.get_transceivers().next();
        let mid = transceiver
            .and_then(|t| self.pc.rtp_transceiver(t).and_then(|t| t.mid().clone()))
            .unwrap_or_default();
        for layer in 0..self.ssrcs.len() {
            let packets = if simulcast { [1, 3, 9][layer] } else { 1 };
            for i in 0..packets {
                // VP8 payload descriptor (S: a partition starts), then the
                // frame header: bit 0 clear for a keyframe.
                let start = i == 0;
                let mut payload = vec![
                    if start { 0x10 } else { 0x00 },
                    if key { 0x00 } else { 0x01 },
                    0x9d,
                    0x01,
                    0x2a,
                    layer as u8,
                ];
                payload.resize(1000, 0xab);
                let mut header = rtc::rtp::Header {
                    version: 2,
                    marker: i + 1 == packets,
                    payload_type: pt,
                    sequence_number: self.seqs[layer],
                    timestamp: self.frames_sent * 4500,
                    ssrc: self.ssrcs[layer],
                    ..Default::default()
                };
                if let (true, Some((mid_id, rid_id))) = (simulcast, self.mid_rid) {
                    header
                        .set_extension(mid_id, bytes::Bytes::from(mid.clone().into_bytes()))
                        .expect("mid");
                    header
                        .set_extension(
                            rid_id,
                            bytes::Bytes::from_static(["q", "h", "f"][layer].as_bytes()),
                        )
                        .expect("rid");
                }
                self.seqs[layer] = self.seqs[layer].wrapping_add(1);
                if let Some(mut s) = self.pc.rtp_sender(self.sender) {
                    s.write_rtp(
                        now,
                        rtc::rtp::Packet {
                            header,
                            payload: payload.into(),
                        },
                    )
                    .expect("write_rtp");
                }
            }
        }
        self.frames_sent += 1;
    }

    /// Whether a packet of `len` bytes gets through its capped downlink now.
    fn admit(&mut self, now: Instant, len: usize) -> bool {
        let Some((bps, bucket, last)) = self.cap.as_mut() else {
            return true;
        };
        // A bucket of 200 ms at the cap's rate (bursts that a queue of that
        // depth would pass; without the queue's delay).
        let depth = *bps / 8.0 * 0.2;
        *bucket = (*bucket + now.saturating_duration_since(*last).as_secs_f64() * *bps / 8.0).min(depth);
        *last = now;
        if *bucket >= len as f64 {
            *bucket -= len as f64;
            true
        } else {
            false
        }
    }

    /// Asks for a keyframe of every video stream it receives.
    fn request_keyframe(&mut self, now: Instant) {
        let ssrcs: HashSet<u32> = self.video.iter().map(|g| g.ssrc).collect();
        let receivers: Vec<_> = self.pc.get_receivers().collect();
        for id in receivers {
            for &media_ssrc in &ssrcs {
                if let Some(mut r) = self.pc.rtp_receiver(id) {
                    let _ = r.write_rtcp(
                        now,
                        vec![Box::new(PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        })],
                    );
                }
            }
        }
    }

    /// What its connection produced for the application.
    fn read(&mut self, now: Instant) {
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                self.connected = s == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(m) = self.pc.poll_read() {
            match m.message {
                RTCMessage::RtpPacket(_, p) => {
                    self.video.push(Got {
                        ssrc: p.header.ssrc,
                        key: crate::codec::vp8_is_keyframe_start(&p.payload),
                        layer: p.payload.get(5).copied().unwrap_or(0),
                        at: now,
                    });
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in packets {
                        if p.as_any().is::<PictureLossIndication>() {
                            self.plis += 1;
                            self.keyframe_due = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

use std::collections::HashSet;

/// The engine and its browsers, on the test's clock.
struct World {
    now: Instant,
    engine: Engine,
    events: mpsc::UnboundedReceiver<SfuEvent>,
    room: RoomId,
    clients: Vec<Client>,
    next_frame: Instant,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        let mut engine = Engine::new(
            now,
            sfu_addr(),
            None,
            SfuConfig::loopback(),
            Default::default(),
            Default::default(),
        )
        .expect("engine");
        let (tx, events) = mpsc::unbounded_channel();
        engine.handle_command(now, Command::Subscribe(tx));
        let room = RoomId::from("consultation".to_owned());
        let (reply, mut r) = oneshot::channel();
        engine.handle_command(now, Command::CreateRoom(room.clone(), reply));
        r.try_recv().expect("answered").expect("room");
        Self {
            now,
            engine,
            events,
            room,
            clients: Vec::new(),
            next_frame: now,
        }
    }

    /// A browser joins: its offer to the engine, the engine's answer back.
    fn join(&mut self, name: &str) -> usize {
        let i = self.clients.len() as u32;
        self.join_with(name, &[1000 + i])
    }

    /// A browser publishing simulcast joins (three layers).
    fn join_simulcast(&mut self, name: &str) -> usize {
        let i = self.clients.len() as u32;
        self.join_with(name, &[1000 + 10 * i, 1001 + 10 * i, 1002 + 10 * i])
    }

    fn join_with(&mut self, name: &str, ssrcs: &[u32]) -> usize {
        let i = self.clients.len();
        let mut c = Client::new(self.now, name, i as u8 + 1, ssrcs);
        let offer = c.offer(self.now);
        let (reply, mut r) = oneshot::channel();
        self.engine.handle_command(
            self.now,
            Command::Join {
                room: self.room.clone(),
                participant: c.id.clone(),
                offer,
                reply,
            },
        );
        let (answer, _) = r.try_recv().expect("answered").expect("joined");
        c.pc.set_remote_description(self.now, RTCSessionDescription::answer(answer).expect("sdp"))
            .expect("remote answer");
        self.clients.push(c);
        i
    }

    /// Client `i` asks for video (or for audio only), as its page's button does.
    fn want_video(&mut self, i: usize, wanted: bool) {
        let (room, participant) = (self.room.clone(), self.clients[i].id.clone());
        let (reply, mut r) = oneshot::channel();
        self.engine.handle_command(
            self.now,
            Command::WantVideo {
                room,
                participant,
                wanted,
                reply,
            },
        );
        r.try_recv().expect("answered").expect("video wanted");
    }

    /// Moves everything there is to move at `now`; true if anything moved.
    fn exchange(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for c in &mut self.clients {
            while let Some(m) = c.pc.poll_write() {
                moved = true;
                if m.transport.peer_addr == sfu_addr() {
                    self.engine.handle_datagram(now, c.addr, &m.message);
                }
            }
        }
        self.engine.flush(now);
        while let Some(t) = self.engine.poll_transmit() {
            moved = true;
            if let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.to) {
                if !c.admit(now, t.data.len()) {
                    continue;
                }
                let _ = c.pc.handle_read(TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: c.addr,
                        peer_addr: sfu_addr(),
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: t.data,
                });
            }
        }
        for c in &mut self.clients {
            c.read(now);
        }
        // Renegotiation: the engine offers, the browser answers.
        while let Ok(ev) = self.events.try_recv() {
            if let SfuEvent::Offer { participant, sdp, .. } = ev {
                moved = true;
                let Some(c) = self.clients.iter_mut().find(|c| c.id == participant) else {
                    continue;
                };
                c.pc.set_remote_description(now, RTCSessionDescription::offer(sdp).expect("sdp"))
                    .expect("remote offer");
                let answer = c.pc.create_answer(None).expect("answer");
                c.pc.set_local_description(now, answer).expect("local answer");
                let sdp = c.pc.local_description().expect("answer").sdp;
                let (room, participant) = (self.room.clone(), participant.clone());
                let (reply, mut r) = oneshot::channel();
                self.engine.handle_command(
                    now,
                    Command::Answer {
                        room,
                        participant,
                        sdp,
                        reply,
                    },
                );
                r.try_recv().expect("answered").expect("answer taken");
            }
        }
        moved
    }

    /// Runs the call for `d` of the test's time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            for _ in 0..1000 {
                if !self.exchange() {
                    break;
                }
            }
            if self.now >= end {
                return;
            }
            let mut next = self.engine.poll_timeout().min(self.next_frame).min(end);
            for c in &mut self.clients {
                if let Some(t) = c.pc.poll_timeout() {
                    next = next.min(t);
                }
            }
            // Never stand still, never jump past a deadline.
            self.now = next.max(self.now + Duration::from_micros(100));
            let now = self.now;
            if now >= self.engine.poll_timeout() {
                self.engine.handle_timeout(now);
            }
            for c in &mut self.clients {
                if c.pc.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = c.pc.handle_timeout(now);
                }
            }
            if now >= self.next_frame {
                self.next_frame = now + FRAME;
                for c in &mut self.clients {
                    c.send_frame(now);
                }
            }
        }
    }

    /// Video packets client `to` received (in a call of two, all from the other).
    fn video_at(&self, to: usize) -> &[Got] {
        &self.clients[to].video
    }
}

#[test]
fn both_receive_each_other_from_a_keyframe_whoever_joins_first() {
    let mut w = World::new();
    let station = w.join("station");
    // The station waits alone for a while, sending.
    w.run(Duration::from_secs(2));
    assert!(w.clients[station].connected, "the station's connection is up");
    assert!(w.video_at(station).is_empty(), "nobody to receive from yet");
    let doctor = w.join("doctor");
    w.run(Duration::from_secs(3));
    assert!(w.clients[doctor].connected);
    for (who, got) in [("doctor", w.video_at(doctor)), ("station", w.video_at(station))] {
        assert!(
            got.len() >= 20,
            "{who} received {} video packets in 3 s",
            got.len()
        );
        assert!(got[0].key, "{who}'s first video packet starts a keyframe");
        let ssrcs: HashSet<u32> = got.iter().map(|g| g.ssrc).collect();
        assert_eq!(ssrcs.len(), 1, "{who} receives one video stream");
    }
    // The doctor joined after the station's first keyframe: the engine
    // asked the station for a fresh one.
    assert!(w.clients[station].plis >= 1);
}

#[test]
fn a_subscribers_keyframe_request_reaches_the_publisher_at_most_once_per_interval() {
    let mut w = World::new();
    let station = w.join("station");
    let doctor = w.join("doctor");
    w.run(Duration::from_secs(3));
    let before = w.clients[station].plis;
    // The doctor's decoder asks again and again, 20 times in a second.
    for _ in 0..20 {
        let now = w.now;
        w.clients[doctor].request_keyframe(now);
        w.run(Duration::from_millis(50));
    }
    let asked = w.clients[station].plis - before;
    let min = SfuConfig::loopback().keyframe_min_interval;
    let most = (Duration::from_secs(1).as_millis() / min.as_millis()) as usize + 1;
    assert!(
        (1..=most).contains(&asked),
        "the station was asked {asked} times (at most {most})"
    );
    // And the doctor's picture carries on from the keyframe it sent.
    let last_key = w
        .video_at(doctor)
        .iter()
        .rposition(|g| g.key)
        .expect("a keyframe");
    assert!(last_key > 0, "a later keyframe reached the doctor");
}

#[test]
fn audio_only_stops_the_video_and_back_starts_it_from_a_keyframe() {
    let mut w = World::new();
    let station = w.join("station");
    let doctor = w.join("doctor");
    w.run(Duration::from_secs(3));
    w.want_video(station, false);
    w.run(Duration::from_millis(200));
    let off_at = w.video_at(station).len();
    w.run(Duration::from_secs(2));
    assert_eq!(
        w.video_at(station).len(),
        off_at,
        "no video forwarded to the station while it asked for none"
    );
    assert!(
        w.video_at(doctor).len() > 60,
        "the doctor still receives the station"
    );
    w.want_video(station, true);
    w.run(Duration::from_secs(1));
    let again = &w.video_at(station)[off_at..];
    assert!(again.len() >= 10, "video back: {} packets in 1 s", again.len());
    assert!(again[0].key, "from a keyframe");
}

/// The layers the doctor received in each second of `secs` seconds from `from`
/// (the layer of most of that second's packets).
fn layer_per_second(got: &[Got], from: Instant, secs: u64) -> Vec<Option<u8>> {
    (0..secs)
        .map(|s| {
            let (a, b) = (from + Duration::from_secs(s), from + Duration::from_secs(s + 1));
            let mut count = [0usize; 3];
            for g in got.iter().filter(|g| g.at >= a && g.at < b) {
                count[usize::from(g.layer.min(2))] += 1;
            }
            (count.iter().sum::<usize>() > 0)
                .then(|| (0..3u8).max_by_key(|&l| count[usize::from(l)]).unwrap_or(0))
        })
        .collect()
}

#[test]
fn a_simulcast_subscriber_starts_low_climbs_steps_down_under_a_cap_and_back() {
    let mut w = World::new();
    w.join_simulcast("station");
    let doctor = w.join("doctor");
    let t0 = w.now;
    w.run(Duration::from_secs(20));
    let got = w.video_at(doctor).to_vec();
    let first = got.first().expect("the doctor receives the station");
    assert!(
        first.key && first.layer == 0,
        "starts on the lowest layer, at a keyframe: {first:?}"
    );
    let climbed = layer_per_second(&got, t0, 20);
    assert_eq!(
        climbed[19],
        Some(2),
        "on the top layer after 20 s on a clean link: {climbed:?}"
    );
    // A 300 kbps cap on the doctor's downlink.
    let capped_at = w.now;
    w.clients[doctor].cap = Some((300_000.0, 0.0, capped_at));
    w.run(Duration::from_secs(10));
    let capped = layer_per_second(w.video_at(doctor), capped_at, 10);
    assert!(
        capped[5..].iter().all(|l| *l == Some(0)),
        "down to the lowest layer, which fits, within 5 s, and kept: {capped:?}"
    );
    // The cap lifts.
    w.clients[doctor].cap = None;
    let lifted_at = w.now;
    w.run(Duration::from_secs(30));
    let back = layer_per_second(w.video_at(doctor), lifted_at, 30);
    assert!(back.contains(&Some(2)), "back to the top layer: {back:?}");
}

#[test]
fn with_no_keyframe_awaited_the_engine_looks_rarely_and_a_request_wakes_it_at_once() {
    let mut w = World::new();
    let station = w.join("station");
    let doctor = w.join("doctor");
    w.run(Duration::from_secs(3));
    assert!(!w.video_at(doctor).is_empty(), "the call is up");
    // Settled: nobody waits for a picture, so the next look is the idle one.
    let idle_for = w.engine.next_keyframe_tick.saturating_duration_since(w.now);
    assert!(
        idle_for > KEYFRAME_TICK,
        "with nothing awaited the next keyframe look is {idle_for:?} away"
    );
    // The doctor's decoder asks for a keyframe: the engine relays it in the
    // turn the request arrives, not at the next tick.
    let before = w.clients[station].plis;
    let asked_at = w.now;
    w.clients[doctor].request_keyframe(asked_at);
    w.run(Duration::from_millis(5));
    assert!(
        w.clients[station].plis > before,
        "the station was asked within 5 ms of the doctor's request"
    );
    // The deadline heap stays small: stale entries do not pile up.
    assert!(
        w.engine.deadlines.len() <= 4 * w.engine.peers.len() + 64,
        "{} deadline entries for {} peers",
        w.engine.deadlines.len(),
        w.engine.peers.len()
    );
}
