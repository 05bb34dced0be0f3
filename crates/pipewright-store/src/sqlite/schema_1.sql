-- Schema version 1 of the pipewright-store SQLite database.

CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    job TEXT NOT NULL,
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    inputs TEXT NOT NULL,             -- JSON object: resource id -> version id
    input_values TEXT NOT NULL,       -- JSON object
    rerun_of INTEGER REFERENCES builds (id),
    trigger_text TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    approved_by TEXT NOT NULL,        -- JSON array of names
    reason TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    UNIQUE (pipeline, job, number)
);

CREATE INDEX builds_by_state ON builds (state, id);

CREATE TABLE build_steps (
    build_id INTEGER NOT NULL REFERENCES builds (id),
    step TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms INTEGER,
    reason TEXT,
    PRIMARY KEY (build_id, step)
) WITHOUT ROWID;

CREATE TABLE events (
    build_id INTEGER NOT NULL REFERENCES builds (id),
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,               -- the event's JSON
    log TEXT,                         -- the text of a log chunk
    PRIMARY KEY (build_id, seq)
) WITHOUT ROWID;

CREATE TABLE versions (
    resource TEXT NOT NULL,
    id INTEGER NOT NULL,
    version TEXT NOT NULL,            -- JSON object with sorted keys
    PRIMARY KEY (resource, id),
    UNIQUE (resource, version)
);

CREATE TABLE version_builds (
    job TEXT NOT NULL,
    number INTEGER NOT NULL,
    status TEXT NOT NULL,
    passes INTEGER NOT NULL,          -- 1 when its versions pass the job
    PRIMARY KEY (job, number)
) WITHOUT ROWID;

CREATE TABLE version_touches (
    job TEXT NOT NULL,
    number INTEGER NOT NULL,
    resource TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    output INTEGER NOT NULL,          -- 0: an input, 1: produced by a put
    FOREIGN KEY (job, number) REFERENCES version_builds (job, number)
);

CREATE INDEX version_touches_by_job ON version_touches (job, resource);
CREATE INDEX version_touches_by_build ON version_touches (job, number);

CREATE TABLE pins (
    resource TEXT PRIMARY KEY,
    version_id INTEGER NOT NULL
) WITHOUT ROWID;
