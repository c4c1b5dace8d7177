-- Doctors' working hours and leave; double booking made impossible.

-- Weekly working hours in Vietnam's local time (UTC+7, no daylight saving).
CREATE TABLE doctor_hours (
    doctor_id     TEXT NOT NULL REFERENCES users(id),
    weekday       INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7), -- ISO 8601: 1 = Monday
    start_minute  INTEGER NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute    INTEGER NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
    CHECK (start_minute < end_minute),
    PRIMARY KEY (doctor_id, weekday, start_minute)
);

-- Exceptions: leave, training, duty elsewhere.
CREATE TABLE doctor_leave (
    id          TEXT PRIMARY KEY,
    doctor_id   TEXT NOT NULL REFERENCES users(id),
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CHECK (starts_at < ends_at)
);
CREATE INDEX doctor_leave_doctor ON doctor_leave(doctor_id, starts_at);

-- A doctor holds at most one live booking per slot start: the database
-- refuses a second one whatever the code does. Slots are fixed-length and
-- aligned, so equal starts are exactly the overlaps.
CREATE UNIQUE INDEX consultations_no_double_booking ON consultations(doctor_id, scheduled_start)
    WHERE doctor_id IS NOT NULL AND scheduled_start IS NOT NULL
      AND state IN ('scheduled', 'in_progress', 'interrupted');
CREATE INDEX consultations_scheduled ON consultations(state, scheduled_start);
