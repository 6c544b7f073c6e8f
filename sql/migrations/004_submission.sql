-- 004: jobs that wait for a person, and mail back to submitters.
-- jobs.kind: "dm" (a submitter's DM, composed per recipient) or "notice"
-- (a receipt or completion report to a submitter: jobs.body holds the whole
-- RFC 5322 message, sent as it is with a null envelope sender so that
-- nothing answers it); notices carry parent_id, the job they are about.
-- jobs.state gains "held" (waiting for approval), "paused", "cancelled" and
-- "expired" beside "queued", "sending" and "done". Deliveries of a held or
-- paused job have state "held" / "paused" and next_attempt NULL, so that the
-- due index never ranges over them; releasing them sets both again.
-- confirm_code: what a reply to the receipt must carry to approve a held
-- job; hold_expires: when a held job that nobody approved expires.
-- reported_at: when the completion report was queued (once per job).
ALTER TABLE jobs
  ADD COLUMN IF NOT EXISTS kind VARCHAR(8) CHARACTER SET ascii NOT NULL DEFAULT 'dm' AFTER id,
  ADD COLUMN IF NOT EXISTS parent_id BIGINT UNSIGNED NULL AFTER kind,
  ADD COLUMN IF NOT EXISTS confirm_code VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN IF NOT EXISTS hold_expires DATETIME(6) NULL,
  ADD COLUMN IF NOT EXISTS approved_by VARCHAR(320) NULL,
  ADD COLUMN IF NOT EXISTS approved_at DATETIME(6) NULL,
  ADD COLUMN IF NOT EXISTS reported_at DATETIME(6) NULL,
  ADD KEY IF NOT EXISTS jobs_submitter_created (submitter, created_at),
  ADD KEY IF NOT EXISTS jobs_confirm (confirm_code);
