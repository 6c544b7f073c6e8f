-- 003: list cleaning and unsubscribes.
-- address_failures: one row each time an address failed as an unknown user
-- or domain (a refusal at the SMTP session, or a DSN that came back), with
-- the UTC day it happened. An address that failed on cleaning.min_days
-- different days within cleaning.window is suppressed. Policy blocks are
-- never written here.
-- suppressions: addresses that later jobs skip, and why: "unknown-user"
-- (cleaning), "unsubscribed" (List-Unsubscribe by mail or one-click), or
-- "manual" (hatoctl suppress add). Their deliveries still waiting are
-- cancelled: deliveries.state "cancelled" (states are VARCHAR already).
-- delivery_log.class is the bounce class of a failure ("unknown-user",
-- "policy", ...; bounce_class_name()).
CREATE TABLE IF NOT EXISTS address_failures (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  address       VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  day           DATE         NOT NULL,
  class         VARCHAR(16)  NOT NULL,
  delivery_id   BIGINT UNSIGNED NULL,
  at            DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  source        VARCHAR(8)   NOT NULL DEFAULT 'smtp',
  reply         VARCHAR(1000) NULL,
  KEY address_failures_address (address(64), day),
  KEY address_failures_day (day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS suppressions (
  address       VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
  reason        VARCHAR(16)  NOT NULL,
  created_at    DATETIME(6)  NOT NULL,
  last_reply    VARCHAR(1000) NULL,
  delivery_id   BIGINT UNSIGNED NULL,
  KEY suppressions_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE delivery_log ADD COLUMN IF NOT EXISTS class VARCHAR(16) NULL AFTER text;
