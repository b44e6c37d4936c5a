-- Dynamo inventory store, MariaDB / MySQL (InnoDB). Schema version 1.
--
-- Two populations that exist by the million are packed (see dynamo/store/rows.py):
-- block_files holds one row per block with its packed file table, and
-- dataset_replicas.block_replicas packs the replica's block replicas.
-- Times are UNIX seconds (BIGINT): no time-zone conversions anywhere.
-- Names compare case-sensitively (utf8mb4_bin), as the image does.

CREATE TABLE IF NOT EXISTS store_meta (
  name VARCHAR(32) NOT NULL PRIMARY KEY,
  value BIGINT NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS owner_groups (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  olevel ENUM('Dataset','Block') NOT NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS sites (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  host VARCHAR(255) NOT NULL,
  storage_type ENUM('disk','mss','buffer','unknown') NOT NULL,
  backend VARCHAR(1024) NOT NULL,
  status ENUM('ready','waitroom','morgue','unknown') NOT NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS partitions (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS site_partitions (
  site_id INT UNSIGNED NOT NULL,
  partition_id INT UNSIGNED NOT NULL,
  quota BIGINT NOT NULL COMMENT 'bytes, -1 = unlimited',
  PRIMARY KEY (site_id, partition_id),
  KEY partition_id (partition_id),
  CONSTRAINT sp_site FOREIGN KEY (site_id) REFERENCES sites (id) ON DELETE CASCADE,
  CONSTRAINT sp_partition FOREIGN KEY (partition_id) REFERENCES partitions (id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- The original Dynamo's per-site and per-partition settings (docs/migrating.md), in tables of
-- their own so that a store created before them only gains tables: one row per site or
-- partition, written with it. filename_mapping is JSON {protocol: [[[lfn pattern, pfn], ...], ...]}.
CREATE TABLE IF NOT EXISTS site_options (
  site_id INT UNSIGNED NOT NULL PRIMARY KEY,
  filename_mapping MEDIUMTEXT NOT NULL,
  x509proxy VARCHAR(1024) NULL,
  CONSTRAINT so_site FOREIGN KEY (site_id) REFERENCES sites (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS partition_options (
  partition_id INT UNSIGNED NOT NULL PRIMARY KEY,
  cond TEXT NULL COMMENT 'membership condition (dataformat/condition.py), NULL = every block replica',
  parent_id INT UNSIGNED NULL COMMENT 'the superpartition (a partition with subpartitions cannot be deleted)',
  CONSTRAINT po_partition FOREIGN KEY (partition_id) REFERENCES partitions (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS datasets (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  status ENUM('unknown','deleted','deprecated','invalid','production','valid','ignored') NOT NULL,
  data_type ENUM('unknown','production','test') NOT NULL,
  software_version VARCHAR(128) NULL,
  last_update BIGINT NOT NULL,
  is_open TINYINT(1) NOT NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS blocks (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  dataset_id INT UNSIGNED NOT NULL,
  name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  size BIGINT NOT NULL,
  num_files INT UNSIGNED NOT NULL,
  is_open TINYINT(1) NOT NULL,
  last_update BIGINT NOT NULL,
  UNIQUE KEY dataset_name (dataset_id, name),
  CONSTRAINT block_dataset FOREIGN KEY (dataset_id) REFERENCES datasets (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS block_files (
  block_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  files LONGBLOB NOT NULL COMMENT 'packed file table, dynamo/dataformat/filetable.py',
  CONSTRAINT files_block FOREIGN KEY (block_id) REFERENCES blocks (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS dataset_replicas (
  dataset_id INT UNSIGNED NOT NULL,
  site_id INT UNSIGNED NOT NULL,
  growing TINYINT(1) NOT NULL,
  group_id INT UNSIGNED NULL COMMENT 'NULL = the null group',
  block_replicas LONGBLOB NOT NULL COMMENT 'packed block replicas, dynamo/store/rows.py',
  PRIMARY KEY (dataset_id, site_id),
  KEY site_id (site_id),
  KEY group_id (group_id),
  CONSTRAINT dr_dataset FOREIGN KEY (dataset_id) REFERENCES datasets (id) ON DELETE CASCADE,
  CONSTRAINT dr_site FOREIGN KEY (site_id) REFERENCES sites (id) ON DELETE CASCADE,
  CONSTRAINT dr_group FOREIGN KEY (group_id) REFERENCES owner_groups (id) ON DELETE SET NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS journal (
  seq BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  time DOUBLE NOT NULL,
  user VARCHAR(128) NOT NULL,
  dn VARCHAR(512) NOT NULL,
  title VARCHAR(128) NOT NULL,
  checksum VARCHAR(64) NOT NULL,
  run_id BIGINT NOT NULL,
  num_records BIGINT NOT NULL,
  pruned TINYINT(1) NOT NULL DEFAULT 0,
  KEY time (time)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS journal_chunks (
  seq BIGINT UNSIGNED NOT NULL,
  chunk INT UNSIGNED NOT NULL,
  data LONGBLOB NOT NULL COMMENT 'zlib-compressed JSON array of records, dynamo/core/journal.py',
  PRIMARY KEY (seq, chunk),
  CONSTRAINT chunk_entry FOREIGN KEY (seq) REFERENCES journal (seq) ON DELETE CASCADE
) ENGINE=InnoDB;

-- Server tables: users and roles, authorized applications, application records.

CREATE TABLE IF NOT EXISTS users (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  dn VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL COMMENT 'X.509 subject, /C=../O=../CN=..',
  email VARCHAR(256) NOT NULL DEFAULT '',
  UNIQUE KEY name (name),
  UNIQUE KEY dn (dn)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS user_roles (
  user_id INT UNSIGNED NOT NULL,
  role VARCHAR(32) NOT NULL,
  target VARCHAR(32) NOT NULL,
  PRIMARY KEY (user_id, role, target),
  CONSTRAINT role_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS app_authorizations (
  title VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  user VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL COMMENT 'empty = any user',
  checksum CHAR(64) NOT NULL COMMENT 'SHA-256 of the script bytes, hex',
  authorized_by VARCHAR(64) NOT NULL,
  time DOUBLE NOT NULL,
  PRIMARY KEY (title, user)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS applications (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  title VARCHAR(128) NOT NULL,
  user VARCHAR(64) NOT NULL,
  write_access TINYINT(1) NOT NULL,
  script VARCHAR(255) NOT NULL,
  checksum CHAR(64) NOT NULL,
  args TEXT NOT NULL COMMENT 'JSON list',
  status VARCHAR(16) NOT NULL,
  exit_code INT NULL,
  message TEXT NOT NULL,
  server VARCHAR(255) NOT NULL,
  pid INT NULL,
  work_area VARCHAR(1024) NOT NULL,
  submitted DOUBLE NOT NULL,
  started DOUBLE NULL,
  ended DOUBLE NULL,
  version BIGINT NULL COMMENT 'inventory version the application saw, or its changes created',
  KEY status (status),
  KEY submitted (submitted)
) ENGINE=InnoDB;
