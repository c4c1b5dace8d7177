-- Initial schema (PostgreSQL). Keep in step with ../sqlite/0001_init.sql.
-- Ids are UUID text; times are RFC 3339 UTC text with milliseconds (sortable).

CREATE TABLE facilities (
    id                    TEXT PRIMARY KEY,
    code                  TEXT NOT NULL UNIQUE,
    name                  TEXT NOT NULL,
    kind                  TEXT NOT NULL CHECK (kind IN ('commune_station', 'district_hospital', 'provincial_hospital')),
    referral_hospital_id  TEXT REFERENCES facilities(id),
    province              TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    CHECK (kind <> 'commune_station' OR referral_hospital_id IS NOT NULL)
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('health_worker', 'doctor', 'admin')),
    facility_id    TEXT REFERENCES facilities(id),
    active         BIGINT NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CHECK (role = 'admin' OR facility_id IS NOT NULL)
);

CREATE TABLE auth_sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id),
    refresh_token_hash  TEXT NOT NULL UNIQUE,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    revoked_at          TEXT,
    client_addr         TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);

CREATE TABLE patients (
    id             TEXT PRIMARY KEY,
    facility_id    TEXT NOT NULL REFERENCES facilities(id),
    full_name      TEXT NOT NULL,
    search_name    TEXT NOT NULL,
    date_of_birth  TEXT NOT NULL,
    sex            TEXT NOT NULL CHECK (sex IN ('male', 'female', 'other')),
    phone          TEXT,
    address        TEXT,
    cccd           TEXT UNIQUE,
    bhyt           TEXT,
    version        BIGINT NOT NULL,
    created_by     TEXT NOT NULL REFERENCES users(id),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX patients_facility_name ON patients(facility_id, search_name);
CREATE INDEX patients_phone ON patients(phone);

CREATE TABLE consultations (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    station_id       TEXT NOT NULL REFERENCES facilities(id),
    hospital_id      TEXT NOT NULL REFERENCES facilities(id),
    doctor_id        TEXT REFERENCES users(id),
    requested_by     TEXT NOT NULL REFERENCES users(id),
    kind             TEXT NOT NULL CHECK (kind IN ('urgent', 'scheduled')),
    state            TEXT NOT NULL CHECK (state IN ('requested', 'scheduled', 'in_progress', 'completed', 'cancelled', 'no_show', 'interrupted')),
    reason           TEXT NOT NULL,
    scheduled_start  TEXT,
    scheduled_end    TEXT,
    started_at       TEXT,
    ended_at         TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX consultations_patient ON consultations(patient_id);
CREATE INDEX consultations_hospital_state ON consultations(hospital_id, state);
CREATE INDEX consultations_doctor ON consultations(doctor_id);

CREATE TABLE notes (
    id               TEXT PRIMARY KEY,
    consultation_id  TEXT NOT NULL REFERENCES consultations(id),
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    author_id        TEXT NOT NULL REFERENCES users(id),
    status           TEXT NOT NULL CHECK (status IN ('draft', 'signed')),
    version          BIGINT NOT NULL,
    subjective       TEXT NOT NULL,
    objective        TEXT NOT NULL,
    assessment       TEXT NOT NULL,
    plan             TEXT NOT NULL,
    icd10_codes      TEXT NOT NULL,
    disposition      TEXT CHECK (disposition IS NULL OR disposition IN ('treat_at_station', 'refer', 'transfer', 'follow_up')),
    amends_note_id   TEXT UNIQUE REFERENCES notes(id),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    signed_at        TEXT,
    CHECK (status = 'draft' OR signed_at IS NOT NULL)
);
CREATE INDEX notes_consultation ON notes(consultation_id);
CREATE INDEX notes_patient ON notes(patient_id);

-- A signed note is never changed: the database refuses it even if code tries.
CREATE FUNCTION notes_signed_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'signed' THEN
        RAISE EXCEPTION 'signed note is immutable';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER notes_signed_immutable BEFORE UPDATE OR DELETE ON notes
FOR EACH ROW EXECUTE FUNCTION notes_signed_immutable();

CREATE TABLE vitals (
    id                TEXT PRIMARY KEY,
    patient_id        TEXT NOT NULL REFERENCES patients(id),
    consultation_id   TEXT REFERENCES consultations(id),
    recorded_by       TEXT NOT NULL REFERENCES users(id),
    recorded_at       TEXT NOT NULL,
    temperature_c     DOUBLE PRECISION,
    pulse_bpm         BIGINT,
    systolic_mmhg     BIGINT,
    diastolic_mmhg    BIGINT,
    respiratory_rate  BIGINT,
    spo2_pct          BIGINT,
    weight_kg         DOUBLE PRECISION
);
CREATE INDEX vitals_patient ON vitals(patient_id, recorded_at);

CREATE TABLE attachments (
    id               TEXT PRIMARY KEY,
    consultation_id  TEXT NOT NULL REFERENCES consultations(id),
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    uploaded_by      TEXT NOT NULL REFERENCES users(id),
    content_type     TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    data             BYTEA NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX attachments_consultation ON attachments(consultation_id);

CREATE TABLE session_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consultation_id  TEXT NOT NULL REFERENCES consultations(id),
    at               TEXT NOT NULL,
    kind             TEXT NOT NULL,
    user_id          TEXT REFERENCES users(id),
    data             TEXT NOT NULL
);
CREATE INDEX session_events_consultation ON session_events(consultation_id, id);

CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             TEXT NOT NULL,
    actor_id       TEXT,
    actor_role     TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT,
    patient_id     TEXT,
    client_addr    TEXT,
    outcome        TEXT NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log(patient_id, id);
CREATE INDEX audit_log_actor ON audit_log(actor_id, id);
CREATE INDEX audit_log_at ON audit_log(at);

-- The audit trail is append-only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- One original note per consultation; later versions are amendments of it.
CREATE UNIQUE INDEX notes_one_original ON notes(consultation_id) WHERE amends_note_id IS NULL;
