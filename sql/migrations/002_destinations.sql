-- 002: destinations and their shared pace.
-- Every delivery names its destination ("relay:docomo", "pace:au",
-- "mx:example.com"), so that gateways claim per destination and a slow one
-- never holds up the others. pace_state is a paced destination's schedule,
-- shared by every gateway: the next free send slot, the current fraction of
-- the configured rate (halved on trouble, recovering on success), and a
-- suspension.
ALTER TABLE deliveries
  ADD COLUMN dest VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '' AFTER domain,
  ADD KEY deliveries_dest_due (dest, next_attempt);

CREATE TABLE IF NOT EXISTS pace_state (
  dest            VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  next_slot       DATETIME(6)  NOT NULL,
  factor          DOUBLE       NOT NULL DEFAULT 1,
  suspended_until DATETIME(6)  NULL,
  reason          VARCHAR(255) NULL,
  updated_at      DATETIME(6)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

ALTER TABLE delivery_log ADD KEY delivery_log_dest (destination, id);
