//! Which engine hosts each room.
//!
//! A node runs one media engine per core ([`crate::SfuConfig::engines`]);
//! a room and all its participants live on one of them, so that nothing on
//! the packet path crosses threads. A new room goes to the engine with the
//! fewest rooms (every room placed counts at once, before anyone joins, so
//! that rooms created together spread), then the fewest participants, then
//! the lowest index. Rooms never move: a consultation is two or three
//! people, and moving one would break its connections.

use crate::ids::RoomId;
use std::collections::HashMap;

/// The room → engine map of one node, and each engine's room count.
#[derive(Debug)]
pub(crate) struct Placement {
    rooms: HashMap<RoomId, usize>,
    per_engine: Vec<usize>,
}

impl Placement {
    /// No rooms yet on `engines` engines (at least one).
    pub(crate) fn new(engines: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            per_engine: vec![0; engines.max(1)],
        }
    }

    /// The engine hosting `room`, if it exists.
    pub(crate) fn engine_of(&self, room: &RoomId) -> Option<usize> {
        self.rooms.get(room).copied()
    }

    /// The engine a new room would go to, given each engine's participant
    /// count.
    pub(crate) fn choose(&self, participants: &[usize]) -> usize {
        (0..self.per_engine.len())
            .min_by_key(|&i| (self.per_engine[i], participants.get(i).copied().unwrap_or(0), i))
            .unwrap_or(0)
    }

    /// Records a new room on `engine` (one that [`Self::choose`] gave).
    pub(crate) fn insert(&mut self, room: RoomId, engine: usize) {
        if let Some(old) = self.rooms.insert(room, engine) {
            self.per_engine[old] -= 1;
        }
        self.per_engine[engine] += 1;
    }

    /// Places a new room, given each engine's participant count; `None` if
    /// the room already exists.
    #[cfg(test)]
    fn place(&mut self, room: RoomId, participants: &[usize]) -> Option<usize> {
        if self.rooms.contains_key(&room) {
            return None;
        }
        let engine = self.choose(participants);
        self.insert(room, engine);
        Some(engine)
    }

    /// Forgets a room; returns the engine that hosted it.
    pub(crate) fn remove(&mut self, room: &RoomId) -> Option<usize> {
        let engine = self.rooms.remove(room)?;
        self.per_engine[engine] -= 1;
        Some(engine)
    }

    /// How many rooms each engine hosts.
    pub(crate) fn rooms_per_engine(&self) -> &[usize] {
        &self.per_engine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: u32) -> RoomId {
        RoomId::new(format!("room-{n}"))
    }

    #[test]
    fn rooms_created_together_spread_over_the_engines() {
        let mut p = Placement::new(3);
        let placed: Vec<usize> = (0..7).map(|n| p.place(room(n), &[0, 0, 0]).unwrap()).collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.rooms_per_engine(), [3, 2, 2]);
    }

    #[test]
    fn a_new_room_goes_where_rooms_have_closed() {
        let mut p = Placement::new(2);
        for n in 0..4 {
            p.place(room(n), &[0, 0]);
        }
        // Engine 0 hosted rooms 0 and 2.
        assert_eq!(p.remove(&room(0)), Some(0));
        assert_eq!(p.remove(&room(2)), Some(0));
        assert_eq!(p.remove(&room(2)), None, "a room is forgotten once");
        assert_eq!(p.place(room(10), &[0, 4]), Some(0));
        assert_eq!(p.place(room(11), &[2, 4]), Some(0));
        assert_eq!(p.rooms_per_engine(), [2, 2]);
    }

    #[test]
    fn between_engines_with_as_many_rooms_the_one_with_fewer_participants_wins() {
        let mut p = Placement::new(2);
        assert_eq!(p.place(room(1), &[5, 2]), Some(1));
        assert_eq!(p.place(room(2), &[5, 2]), Some(0));
        assert_eq!(p.place(room(3), &[3, 2]), Some(1));
    }

    #[test]
    fn a_room_exists_once_and_stays_where_it_was_placed() {
        let mut p = Placement::new(2);
        assert_eq!(p.place(room(1), &[0, 0]), Some(0));
        assert_eq!(p.place(room(1), &[9, 0]), None);
        assert_eq!(p.engine_of(&room(1)), Some(0));
        assert_eq!(p.engine_of(&room(2)), None);
        assert_eq!(p.rooms_per_engine(), [1, 0]);
    }
}
