//! Named link profiles: the links a commune station and a district hospital
//! really have, each as a [`ShapeSpec`] per direction (up: from the client
//! to the server). Built from the figures the field reports give for rural
//! Vietnam: 2-10 % loss that comes in bursts on a weak cell, 100-400 ms
//! round trips, 300 kbit/s-2 Mbit/s up, jitter, and a cell or a shared line
//! that fills up at clinic hours (a deep queue in front of a low rate).
//!
//! `POST /links/{ip}/profile` with `{"name": "4g-yeu"}` applies one;
//! `GET /profiles` lists them with their shapes.

use serde::Serialize;

use super::ShapeSpec;

/// A named link.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// Its name in the API (ASCII).
    pub name: &'static str,
    /// What a health worker would call it.
    pub label: &'static str,
    /// Client to server.
    pub up: ShapeSpec,
    /// Server to client.
    pub down: ShapeSpec,
}

#[allow(clippy::too_many_arguments)]
fn spec(
    loss: f64,
    burst_len: f64,
    delay_ms: f64,
    jitter_ms: f64,
    rate_kbps: Option<f64>,
    queue_ms: f64,
) -> ShapeSpec {
    ShapeSpec {
        loss: Some(loss),
        burst_len: Some(burst_len),
        delay_ms: Some(delay_ms),
        jitter_ms: Some(jitter_ms),
        rate_kbps,
        queue_ms: Some(queue_ms),
    }
}

/// Every named profile, best link first.
pub fn all() -> Vec<Profile> {
    vec![
        Profile {
            name: "sach",
            label: "Không suy hao / clean",
            up: ShapeSpec::default(),
            down: ShapeSpec::default(),
        },
        Profile {
            name: "cap-quang-chia-se",
            label: "Cáp quang chia sẻ / shared fibre",
            // Little loss, short delay, but a shared line with a deep
            // queue: bufferbloat when the office uploads.
            up: spec(0.005, 1.0, 10.0, 5.0, Some(1000.0), 800.0),
            down: spec(0.002, 1.0, 10.0, 5.0, Some(4000.0), 800.0),
        },
        Profile {
            name: "4g-tot",
            label: "4G tốt / good 4G",
            up: spec(0.01, 2.0, 40.0, 10.0, Some(2000.0), 200.0),
            down: spec(0.005, 2.0, 40.0, 10.0, Some(8000.0), 200.0),
        },
        Profile {
            name: "4g-yeu",
            label: "4G yếu / weak 4G",
            // A cell edge: losses in bursts of three, 200 ms round trip.
            up: spec(0.05, 3.0, 100.0, 40.0, Some(600.0), 300.0),
            down: spec(0.03, 3.0, 100.0, 30.0, Some(1500.0), 300.0),
        },
        Profile {
            name: "4g-gio-cao-diem",
            label: "4G giờ cao điểm / 4G at peak hours",
            // A congested cell: 300 kbit/s up behind half a second of
            // queue, bursts of four, 300 ms round trip.
            up: spec(0.08, 4.0, 150.0, 60.0, Some(300.0), 500.0),
            down: spec(0.05, 4.0, 150.0, 50.0, Some(800.0), 500.0),
        },
    ]
}

/// The profile called `name`.
pub fn named(name: &str) -> Option<Profile> {
    all().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linkemu::Shape;

    #[test]
    fn every_profile_is_a_valid_shape_both_ways_with_a_unique_name() {
        let all = all();
        for p in &all {
            Shape::try_from(&p.up).unwrap_or_else(|e| panic!("{} up: {e}", p.name));
            Shape::try_from(&p.down).unwrap_or_else(|e| panic!("{} down: {e}", p.name));
            assert_eq!(all.iter().filter(|q| q.name == p.name).count(), 1, "{}", p.name);
            assert!(p.name.is_ascii(), "{}", p.name);
        }
        assert!(named("4g-yeu").is_some() && named("4G yếu").is_none());
    }
}
