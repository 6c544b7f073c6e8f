-- 005: job control and rehearsal.
-- deliveries.wait_us: while a delivery is held or paused (next_attempt
-- NULL), how long after its job's send_at it is due, so that approving,
-- resuming or rescheduling gives it back its place in a Rate or Send-By
-- spread instead of sending the whole job at once.
-- deliveries.render_dest: a rehearsal copy (Dry-Run) goes to a rehearsal
-- address by that address's own route (dest) but is written as the
-- recipients of render_dest would get it (charset, headers), so that each
-- carrier's rendering can be checked. NULL for every real delivery.
-- A rehearsal job keeps its real recipients as deliveries in state
-- 'rehearsal' (never due): what the real run would send, for the report.
ALTER TABLE deliveries
  ADD COLUMN IF NOT EXISTS wait_us BIGINT NULL,
  ADD COLUMN IF NOT EXISTS render_dest VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL;
