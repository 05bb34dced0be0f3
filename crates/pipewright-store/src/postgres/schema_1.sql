-- Schema version 1 of the pipewright-store PostgreSQL database. The version itself lives in
-- `pipewright_schema`, which `PostgresStore::connect` creates and keeps.

-- The newest build id: a create takes this one row's lock, so creates are serialized, ids grow
-- in commit order (a cursor over ids never skips a build that committed late) and each job's
-- numbers have no gaps.
CREATE TABLE build_ids (
    last BIGINT NOT NULL
);
INSERT INTO build_ids (last) VALUES (0);

CREATE TABLE builds (
    id BIGINT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    job TEXT NOT NULL,
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    worker TEXT,
    inputs TEXT NOT NULL,             -- JSON object: resource id -> version id
    input_values TEXT NOT NULL,       -- JSON object
    rerun_of BIGINT REFERENCES builds (id),
    trigger_text TEXT NOT NULL,
    approvals_required BIGINT NOT NULL,
    approved_by TEXT NOT NULL,        -- JSON array of names
    reason TEXT,
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    UNIQUE (pipeline, job, number)
);

CREATE INDEX builds_by_state ON builds (state, id);

CREATE TABLE build_steps (
    build_id BIGINT NOT NULL REFERENCES builds (id),
    step TEXT NOT NULL,               -- the step id's JSON
    position BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    duration_ms BIGINT,
    reason TEXT,
    PRIMARY KEY (build_id, step)
);

-- JSON is kept as TEXT, byte for byte as written (JSONB would reject a `\u0000` in a string);
-- a log chunk as BYTEA holding its UTF-8, since TEXT cannot hold a NUL character.
CREATE TABLE events (
    build_id BIGINT NOT NULL REFERENCES builds (id),
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,               -- the event's JSON
    log BYTEA,                        -- the text of a log chunk
    PRIMARY KEY (build_id, seq)
);

CREATE TABLE versions (
    resource TEXT NOT NULL,
    id BIGINT NOT NULL,
    version TEXT NOT NULL,            -- JSON object with sorted keys
    PRIMARY KEY (resource, id)
);

-- Finding a version by value: by its digest (a long version would not fit a btree entry), then
-- compared whole. Saves of one resource hold its `version_ids` row, so no duplicate is stored.
CREATE INDEX versions_by_value ON versions (resource, md5(version));

-- The newest version id of each resource; a save takes its row's lock.
CREATE TABLE version_ids (
    resource TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

CREATE TABLE version_builds (
    job TEXT NOT NULL,
    number BIGINT NOT NULL,
    status TEXT NOT NULL,
    passes BOOLEAN NOT NULL,          -- true when its versions pass the job
    PRIMARY KEY (job, number)
);

CREATE TABLE version_touches (
    job TEXT NOT NULL,
    number BIGINT NOT NULL,
    resource TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    output BOOLEAN NOT NULL,          -- false: an input, true: produced by a put
    FOREIGN KEY (job, number) REFERENCES version_builds (job, number)
);

CREATE INDEX version_touches_by_job ON version_touches (job, resource);
CREATE INDEX version_touches_by_build ON version_touches (job, number);

CREATE TABLE pins (
    resource TEXT PRIMARY KEY,
    version_id BIGINT NOT NULL
);
