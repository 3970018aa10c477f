"""Schema migrations, applied in order and recorded in `PRAGMA user_version`.

Append a new script to MIGRATIONS to change the schema; never edit a released one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: users, append-only credit ledger, jobs and their binary inputs.
    """
    CREATE TABLE users (
        user_id     INTEGER PRIMARY KEY,
        created_at  REAL NOT NULL,
        refilled_at REAL NOT NULL
    );

    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id         INTEGER NOT NULL REFERENCES users(user_id),
        idempotency_key TEXT UNIQUE,
        status          TEXT NOT NULL CHECK (status IN
                          ('queued', 'running', 'done', 'delivered', 'failed', 'cancelled')),
        action          TEXT NOT NULL DEFAULT 'animate',
        parent_id       INTEGER REFERENCES jobs(id),
        model           TEXT NOT NULL,
        cost            INTEGER NOT NULL CHECK (cost >= 0),
        params          TEXT NOT NULL DEFAULT '{}',
        delivery        TEXT NOT NULL DEFAULT '{}',
        attempts        INTEGER NOT NULL DEFAULT 0,
        low_memory      INTEGER NOT NULL DEFAULT 0,
        worker          TEXT,
        error           TEXT,
        result_path     TEXT,
        result          TEXT,
        created_at      REAL NOT NULL,
        started_at      REAL,
        finished_at     REAL,
        delivered_at    REAL
    );
    CREATE INDEX jobs_by_status ON jobs(status, id);
    CREATE INDEX jobs_by_user ON jobs(user_id, status);

    CREATE TABLE job_inputs (
        job_id    INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
        image     BLOB NOT NULL,
        end_image BLOB
    );

    CREATE TABLE ledger (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(user_id),
        delta       INTEGER NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN
                      ('welcome', 'grant', 'take', 'debit', 'refund', 'refill')),
        job_id      INTEGER REFERENCES jobs(id),
        operator_id INTEGER,
        reason      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        CHECK ((kind IN ('debit', 'refund')) = (job_id IS NOT NULL)),
        CHECK ((kind IN ('grant', 'take')) = (operator_id IS NOT NULL))
    );
    CREATE INDEX ledger_by_user ON ledger(user_id, id);
    -- The database itself guarantees: one welcome per user, one debit and one refund per job.
    CREATE UNIQUE INDEX ledger_one_welcome ON ledger(user_id) WHERE kind = 'welcome';
    CREATE UNIQUE INDEX ledger_one_per_job ON ledger(job_id, kind) WHERE job_id IS NOT NULL;
    CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only'); END;
    CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only'); END;
    """,
    # 2: bookkeeping for command sync (only sync when definitions change).
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: moderation that persists: who is blocked now, and an append-only log of who did it.
    """
    CREATE TABLE blocks (
        user_id     INTEGER PRIMARY KEY,
        reason      TEXT NOT NULL DEFAULT '',
        operator_id INTEGER NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TABLE moderation_log (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL,
        action      TEXT NOT NULL CHECK (action IN ('block', 'unblock')),
        reason      TEXT NOT NULL DEFAULT '',
        operator_id INTEGER NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TRIGGER moderation_log_append_only_update BEFORE UPDATE ON moderation_log
        BEGIN SELECT RAISE(ABORT, 'the moderation log is append-only'); END;
    CREATE TRIGGER moderation_log_append_only_delete BEFORE DELETE ON moderation_log
        BEGIN SELECT RAISE(ABORT, 'the moderation log is append-only'); END;
    """,
    # 4: why a job failed, as a kind (oom, crash, timeout ...) for metrics; indexes for the
    # daily limit (a member's jobs by creation time) and operators' charts (jobs by end time).
    """
    ALTER TABLE jobs ADD COLUMN failure_kind TEXT;
    CREATE INDEX jobs_by_user_created ON jobs(user_id, created_at);
    CREATE INDEX jobs_by_finish ON jobs(finished_at);
    """,
    # 5: the member's library (/history): a favourite flag (favourites are kept longer), a
    # member's delivered clips that still have their MP4, newest first, and the same clips by
    # delivery time for the retention sweep (KEEP_OUTPUTS_DAYS).
    """
    ALTER TABLE jobs ADD COLUMN favourite INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_library ON jobs(user_id, id DESC)
        WHERE status = 'delivered' AND result_path IS NOT NULL;
    CREATE INDEX jobs_kept_outputs ON jobs(delivered_at)
        WHERE status = 'delivered' AND result_path IS NOT NULL;
    """,
    # 6: variations: takes 2..4 of a job are rows of their own (action 'take', parent_id the
    # job that was charged), found by their parent.
    """
    CREATE INDEX jobs_takes ON jobs(parent_id) WHERE action = 'take';
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
