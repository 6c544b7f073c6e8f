-- 006: completion reports. The gateway looks for jobs that ended and have
-- no report yet (reported_at NULL): this key keeps that a short range of
-- the unreported jobs instead of a scan of every job ever finished. Jobs
-- that ended before reports existed are marked as reported, and so is
-- every notice (a receipt or report is never reported on itself).
UPDATE jobs SET reported_at = COALESCE(finished_at, created_at)
  WHERE reported_at IS NULL AND (kind = 'notice' OR state IN ('done', 'cancelled', 'expired'));
ALTER TABLE jobs ADD KEY IF NOT EXISTS jobs_unreported (reported_at, state);
