-- `gatehouse import-flask`: which Gatehouse row each imported row of the old Flask
-- service's database became. A second run skips what is listed here, and an
-- interrupted run resumes after the last committed batch.
CREATE TABLE flask_import_ids (
    kind TEXT NOT NULL,
    old_id INTEGER NOT NULL,
    new_id INTEGER NOT NULL,
    PRIMARY KEY (kind, old_id)
);
