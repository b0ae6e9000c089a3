-- A device is believed only when it proves who it is (issue 10 §3): per-device credentials of
-- the native protocol, labels people set kept apart from labels devices report, and what each
-- job's success rests on.

-- The credential of a native device, by MAC (the identity). Only the SHA-256 of the secret is
-- kept; the secret itself is handed to the device once, when it enrols.
--   state: 'pending'  enrolled, waiting for a person's approval (no offers, no verification)
--          'approved' enrolled and trusted
--          'revoked'  refused until re-keyed
--          'rekey'    the next check-in enrols again (a new secret, generation + 1)
CREATE TABLE device_credentials (
    mac          TEXT    PRIMARY KEY,
    device_id    TEXT,
    secret_hash  TEXT,
    generation   INTEGER NOT NULL DEFAULT 1,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'revoked', 'rekey')),
    enrolled_at  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX device_credentials_id ON device_credentials (device_id);

-- Labels a device reports (each check-in that carries labels replaces them); `labels` holds the
-- labels people set, which no check-in ever removes. Rollout targets match both.
CREATE TABLE device_labels (
    mac   TEXT NOT NULL REFERENCES devices (mac) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (mac, label)
) WITHOUT ROWID;
CREATE INDEX device_labels_label ON device_labels (label);

-- Evidence of a job: the command whose download token served the image's bytes to the end
-- (`downloaded_command`), and what its success rests on (`evidence`, e.g.
-- 'authenticated+download', 'unauthenticated+download').
CREATE TABLE job_evidence (
    job_id             INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    downloaded_command INTEGER,
    evidence           TEXT
);
