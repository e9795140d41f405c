-- Two-factor authentication, account recovery and brute-force throttling.
-- Timestamps are Unix seconds (UTC) unless the column says _ms; flags are 0 or 1.

-- One row per user who has ever asked for a TOTP secret. Secrets are encrypted with a
-- key derived from SECRET_KEY (nonce and ciphertext, base64).
CREATE TABLE twofa (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- The confirmed secret; NULL while 2FA is off.
    secret_enc TEXT,
    -- The secret handed out by GET /twofa_uri, waiting for its first code.
    pending_enc TEXT,
    pending_created_at INTEGER,
    -- The last TOTP time step accepted: a code is accepted only for a later step.
    last_step INTEGER NOT NULL DEFAULT 0,
    -- When a login code was last emailed: at most one a minute.
    email_code_sent_at INTEGER,
    updated_at INTEGER NOT NULL
);

CREATE TABLE twofa_recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE UNIQUE INDEX twofa_recovery_codes_key ON twofa_recovery_codes (user_id, code_hash);

-- The 6-digit codes emailed at login; only a keyed hash is kept.
CREATE TABLE twofa_email_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX twofa_email_codes_user ON twofa_email_codes (user_id);

-- Failed attempts per (scope, subject), shared by every instance on this database.
CREATE TABLE throttle (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    failures INTEGER NOT NULL,
    blocked_until_ms INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX throttle_updated ON throttle (updated_at_ms);
