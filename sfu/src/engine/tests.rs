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

/// A browser: a peer connection publishing one VP8 track, and what it got.
struct Client {
    id: ParticipantId,
    addr: SocketAddr,
    pc: RTCPeerConnection,
    ssrc: u32,
    sender: RTCRtpSenderId,
    payload_type: Option<u8>,
    seq: u16,
    frames_sent: u32,
    /// Send a keyframe next (the first frame, and after each PLI).
    keyframe_due: bool,
    connected: bool,
    /// Video packets received: (SSRC, keyframe start), in order.
    video: Vec<(u32, bool)>,
    /// Keyframe requests (PLI) received.
    plis: usize,
}

impl Client {
    fn new(now: Instant, name: &str, host: u8, ssrc: u32) -> Self {
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
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
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
                }],
            ))
            .expect("track");
        Self {
            id: ParticipantId::from(name.to_owned()),
            addr: ([10, 0, 1, host], 5000).into(),
            pc,
            ssrc,
            sender,
            payload_type: None,
            seq: 1,
            frames_sent: 0,
            keyframe_due: true,
            connected: false,
            video: Vec::new(),
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

    /// One camera frame (one packet), a keyframe when one is due.
    fn send_frame(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        let pt = match self.payload_type {
            Some(pt) => pt,
            None => {
                let Some(mut s) = self.pc.rtp_sender(self.sender) else {
                    return;
                };
                let Some(pt) = s
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8))
                    .map(|c| c.payload_type)
                else {
                    return;
                };
                self.payload_type = Some(pt);
                pt
            }
        };
        // VP8 payload descriptor (start of a partition), then the frame
        // header: bit 0 clear for a keyframe.
        let key = std::mem::take(&mut self.keyframe_due);
        let mut payload = vec![0x10, if key { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
        payload.resize(600, 0xab);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: self.seq,
                timestamp: self.frames_sent * 4500,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: payload.into(),
        };
        self.seq = self.seq.wrapping_add(1);
        self.frames_sent += 1;
        if let Some(mut s) = self.pc.rtp_sender(self.sender) {
            s.write_rtp(now, packet).expect("write_rtp");
        }
    }

    /// Asks for a keyframe of every video stream it receives.
    fn request_keyframe(&mut self, now: Instant) {
        let ssrcs: HashSet<u32> = self.video.iter().map(|(s, _)| *s).collect();
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
    fn read(&mut self) {
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                self.connected = s == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(m) = self.pc.poll_read() {
            match m.message {
                RTCMessage::RtpPacket(_, p) => {
                    let key = crate::codec::vp8_is_keyframe_start(&p.payload);
                    self.video.push((p.header.ssrc, key));
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
        let mut engine = Engine::new(now, sfu_addr(), None, SfuConfig::loopback()).expect("engine");
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
        let i = self.clients.len();
        let mut c = Client::new(self.now, name, i as u8 + 1, 1000 + i as u32);
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
        let answer = r.try_recv().expect("answered").expect("joined");
        c.pc.set_remote_description(self.now, RTCSessionDescription::answer(answer).expect("sdp"))
            .expect("remote answer");
        self.clients.push(c);
        i
    }

    fn command<T>(&mut self, make: impl FnOnce(Reply<T>) -> Command) -> T {
        let (reply, mut r) = oneshot::channel();
        self.engine.handle_command(self.now, make(reply));
        r.try_recv().expect("answered").expect("command")
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
            c.read();
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

    /// Video packets client `to` received from client `from`'s camera (the
    /// SFU forwards under an SSRC of its own: told apart by which SSRCs `to`
    /// receives at all, one per other publisher).
    fn video_at(&self, to: usize) -> &[(u32, bool)] {
        &self.clients[to].video
    }
}

#[test]
fn both_receive_each_other_from_a_keyframe_whoever_joins_first() {
    let started = Instant::now();
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
        assert!(got[0].1, "{who}'s first video packet starts a keyframe");
        let ssrcs: HashSet<u32> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(ssrcs.len(), 1, "{who} receives one video stream");
    }
    // The doctor joined after the station's first keyframe: the engine
    // asked the station for a fresh one.
    assert!(w.clients[station].plis >= 1);

    // Five seconds of a call, in much less than that.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
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
        .rposition(|(_, k)| *k)
        .expect("a keyframe");
    assert!(last_key > 0, "a later keyframe reached the doctor");
}

#[test]
fn audio_only_stops_the_video_and_back_starts_it_from_a_keyframe() {
    let mut w = World::new();
    let station = w.join("station");
    let doctor = w.join("doctor");
    w.run(Duration::from_secs(3));
    let room = w.room.clone();
    let id = w.clients[station].id.clone();
    w.command(|reply| Command::WantVideo {
        room,
        participant: id,
        wanted: false,
        reply,
    });
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
    let room = w.room.clone();
    let id = w.clients[station].id.clone();
    w.command(|reply| Command::WantVideo {
        room,
        participant: id,
        wanted: true,
        reply,
    });
    w.run(Duration::from_secs(1));
    let again = &w.video_at(station)[off_at..];
    assert!(again.len() >= 10, "video back: {} packets in 1 s", again.len());
    assert!(again[0].1, "from a keyframe");
}
