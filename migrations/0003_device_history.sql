-- A device's history (GET /api/v1/devices/{mac}/history) reads its newest events by subject.
CREATE INDEX events_subject ON events (subject, id);
