-- 001: jobs, one delivery row per recipient, and the append-only delivery log.
-- Every time is UTC: each connection sets time_zone = '+00:00'.
CREATE TABLE IF NOT EXISTS jobs (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  submitter     VARCHAR(64)  NOT NULL,
  env_from      VARCHAR(320) NOT NULL,
  from_addr     VARCHAR(320) NOT NULL,
  subject       TEXT         NOT NULL,
  body          MEDIUMTEXT   NOT NULL,
  source_msgid  VARCHAR(255) NULL,
  state         VARCHAR(16)  NOT NULL DEFAULT 'queued',
  dry_run       TINYINT      NOT NULL DEFAULT 0,
  recipients    INT UNSIGNED NOT NULL DEFAULT 0,
  send_at       DATETIME(6)  NOT NULL,
  created_at    DATETIME(6)  NOT NULL,
  finished_at   DATETIME(6)  NULL,
  KEY jobs_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS deliveries (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job_id        BIGINT UNSIGNED NOT NULL,
  address       VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  domain        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  state         VARCHAR(16)  NOT NULL DEFAULT 'queued',
  attempts      SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  -- when it is due (or when its lease ends); NULL once sent or failed, so
  -- that the due index only ranges over live work.
  next_attempt  DATETIME(6)  NULL,
  lease_owner   VARCHAR(64)  NULL,
  lease_until   DATETIME(6)  NULL,
  last_code     SMALLINT     NULL,
  last_status   VARCHAR(16)  NULL,
  last_text     VARCHAR(1000) NULL,
  created_at    DATETIME(6)  NOT NULL,
  updated_at    DATETIME(6)  NOT NULL,
  done_at       DATETIME(6)  NULL,
  KEY deliveries_due (next_attempt),
  KEY deliveries_job (job_id, state),
  KEY deliveries_address (address(64)),
  CONSTRAINT deliveries_job_fk FOREIGN KEY (job_id) REFERENCES jobs (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS delivery_log (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  delivery_id   BIGINT UNSIGNED NOT NULL,
  job_id        BIGINT UNSIGNED NOT NULL,
  at            DATETIME(6)  NOT NULL,
  attempt       SMALLINT UNSIGNED NOT NULL,
  outcome       VARCHAR(16)  NOT NULL,
  stage         VARCHAR(12)  NOT NULL DEFAULT '',
  code          SMALLINT     NULL,
  status        VARCHAR(16)  NULL,
  text          VARCHAR(1000) NULL,
  destination   VARCHAR(128) NOT NULL DEFAULT '',
  host          VARCHAR(255) NOT NULL DEFAULT '',
  gateway       VARCHAR(64)  NOT NULL DEFAULT '',
  KEY delivery_log_delivery (delivery_id),
  KEY delivery_log_job (job_id, at),
  KEY delivery_log_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
