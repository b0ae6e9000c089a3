-- The rollout engine: how devices are reached, rollout progress, per-job details and history.

-- How the engine reaches a device: {"kind":"pull"} or {"kind":"mqtt","profile":"flotilla","owner":null}.
ALTER TABLE devices ADD COLUMN transport TEXT;

ALTER TABLE rollouts ADD COLUMN current_wave INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN pause_reason TEXT;
-- Seed of the wave assignment (stable across restarts).
ALTER TABLE rollouts ADD COLUMN seed TEXT NOT NULL DEFAULT '';

ALTER TABLE jobs ADD COLUMN device_id TEXT;
ALTER TABLE jobs ADD COLUMN progress INTEGER;
ALTER TABLE jobs ADD COLUMN current_version TEXT;
-- Unix ms after which the current step times out (in-flight jobs only).
ALTER TABLE jobs ADD COLUMN deadline INTEGER;
-- Failures acknowledged by a resume no longer count against the wave's threshold.
ALTER TABLE jobs ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0 CHECK (acknowledged IN (0, 1));
-- Times the device was sent (or handed) a command for this job: crash safety is checked against it.
ALTER TABLE jobs ADD COLUMN commands INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_transitions (
    id     INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    state  TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    detail TEXT
);

CREATE INDEX job_transitions_job ON job_transitions (job_id, id);
CREATE INDEX jobs_rollout ON jobs (rollout_id, wave);
