-- The activity log: route access, authentication events and every change, newest
-- read first. No foreign key to users: the record outlives the account.
CREATE TABLE activity_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    user_id INTEGER,
    user_email TEXT,
    client_ip TEXT,
    user_agent TEXT,
    method TEXT,
    path TEXT,
    status INTEGER,
    duration_ms INTEGER,
    details TEXT
);
CREATE INDEX activity_logs_user ON activity_logs (user_id, id);
CREATE INDEX activity_logs_level ON activity_logs (level, id);
CREATE INDEX activity_logs_created ON activity_logs (created_at);
