-- Flotilla's first schema. Never edit a migration that has landed; add a new file.
-- Times are Unix milliseconds (UTC). JSON columns hold flotilla-proto types.

CREATE TABLE firmware (
    id             INTEGER PRIMARY KEY,
    sha256         TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64),
    version        TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    chip           TEXT    NOT NULL,
    format         TEXT    NOT NULL,
    project        TEXT,
    idf_version    TEXT,
    secure_version INTEGER,
    size           INTEGER NOT NULL CHECK (size > 0),
    channel        TEXT    NOT NULL DEFAULT 'stable' CHECK (channel IN ('stable', 'beta')),
    notes          TEXT,
    min_version    TEXT,
    blocked        INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    public         INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    image_json     TEXT    NOT NULL,
    manifest_json  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    -- One set of bytes per (model, version): re-importing "1.2.0" with other bytes is refused.
    UNIQUE (model, version)
);

CREATE TABLE devices (
    mac        TEXT    PRIMARY KEY CHECK (length(mac) = 17),
    device_id  TEXT,
    name       TEXT,
    family     TEXT    NOT NULL DEFAULT 'unknown',
    model      TEXT,
    chip       TEXT,
    version    TEXT,
    ip         TEXT,
    online     INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    sources    TEXT    NOT NULL DEFAULT '[]',
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX devices_device_id ON devices (device_id);

CREATE TABLE labels (
    mac   TEXT NOT NULL REFERENCES devices (mac) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (mac, label)
) WITHOUT ROWID;

CREATE INDEX labels_label ON labels (label);

CREATE TABLE rollouts (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    firmware_id INTEGER NOT NULL REFERENCES firmware (id) ON DELETE RESTRICT,
    state       TEXT    NOT NULL DEFAULT 'draft',
    -- Target, waves, gates and limits as JSON (shape owned by flotilla-core's rollout planner).
    spec_json   TEXT    NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    rollout_id   INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    mac          TEXT    NOT NULL REFERENCES devices (mac) ON DELETE RESTRICT,
    wave         INTEGER NOT NULL DEFAULT 0,
    state        TEXT    NOT NULL DEFAULT 'queued',
    attempts     INTEGER NOT NULL DEFAULT 0,
    from_version TEXT,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (rollout_id, mac)
);

CREATE INDEX jobs_mac ON jobs (mac);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    subject TEXT,
    data    TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX events_kind ON events (kind, id);
