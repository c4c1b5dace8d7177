-- The patient's consent to remote consultation and to the processing of
-- their health data (Law 91/2025 on personal data): one row per event,
-- granted or withdrawn, never changed or removed. The newest row (highest
-- `seq` for the patient) is the patient's current decision.
CREATE TABLE consents (
    id                 TEXT PRIMARY KEY,
    patient_id         TEXT NOT NULL REFERENCES patients(id),
    seq                BIGINT NOT NULL,
    decision           TEXT NOT NULL CHECK (decision IN ('granted', 'withdrawn')),
    given_by           TEXT NOT NULL CHECK (given_by IN ('patient', 'guardian')),
    guardian_name      TEXT,
    guardian_relation  TEXT,
    text_version       TEXT NOT NULL,
    recorded_by        TEXT NOT NULL REFERENCES users(id),
    facility_id        TEXT NOT NULL REFERENCES facilities(id),
    recorded_at        TEXT NOT NULL,
    UNIQUE (patient_id, seq)
);
CREATE FUNCTION consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consents are append-only';
END;
$$;
CREATE TRIGGER consents_append_only BEFORE UPDATE OR DELETE ON consents
FOR EACH ROW EXECUTE FUNCTION consents_append_only();
