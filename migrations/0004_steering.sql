-- Rollouts a technician can steer: true attempt counts, people skipping devices, pause times;
-- anti-rollback versions and channels of devices; forgetting devices; archived firmware; the
-- fleet's versions over time.

-- A retry a person asks for gives a job a fresh budget of automatic retries without forgetting
-- the attempts made before: the budget counts from `retry_base`.
ALTER TABLE jobs ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;
-- 1 for a device the plan skipped: it is in no wave (people can also skip a device later; that
-- job stays in its wave).
ALTER TABLE jobs ADD COLUMN excluded INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1));
-- Until now only the plan skipped devices.
UPDATE jobs SET excluded = 1 WHERE state = 'skipped';

-- Unix ms of the pause, and who or what paused it: 'person', 'failures' (a wave's failure
-- threshold), 'gate' (a wave's success gate) or 'approval' (waiting to start the next wave).
ALTER TABLE rollouts ADD COLUMN paused_at INTEGER;
ALTER TABLE rollouts ADD COLUMN pause_kind TEXT;

-- The anti-rollback version the device reports (ESP-IDF secure_version).
ALTER TABLE devices ADD COLUMN secure_version INTEGER;
-- The channel set on the device itself; NULL: its labels' channel, else stable.
ALTER TABLE devices ADD COLUMN channel TEXT CHECK (channel IN ('stable', 'beta'));
-- A forgotten device is out of the inventory; its row stays while past jobs refer to it, and a
-- new sighting brings it back as new.
ALTER TABLE devices ADD COLUMN forgotten INTEGER NOT NULL DEFAULT 0 CHECK (forgotten IN (0, 1));

-- The channel followed by the devices carrying a label.
CREATE TABLE label_channels (
    label   TEXT PRIMARY KEY,
    channel TEXT NOT NULL CHECK (channel IN ('stable', 'beta'))
) WITHOUT ROWID;

-- Archived firmware: hidden from the library and from new rollouts, kept for reports.
ALTER TABLE firmware ADD COLUMN archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1));

-- Devices per version, sampled hourly (and when the counts changed) for the dashboard.
CREATE TABLE version_samples (
    at      INTEGER NOT NULL,
    version TEXT    NOT NULL,
    devices INTEGER NOT NULL,
    PRIMARY KEY (at, version)
) WITHOUT ROWID;
