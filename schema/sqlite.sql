-- Dynamo inventory store, SQLite (the embedded default). Schema version 1.
-- Same tables and meaning as mysql.sql; see there and dynamo/store/rows.py.
-- Foreign keys are enforced (the store sets PRAGMA foreign_keys = ON).

CREATE TABLE IF NOT EXISTS store_meta (
  name TEXT NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS owner_groups (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  olevel TEXT NOT NULL CHECK (olevel IN ('Dataset','Block'))
);

CREATE TABLE IF NOT EXISTS sites (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  host TEXT NOT NULL,
  storage_type TEXT NOT NULL CHECK (storage_type IN ('disk','mss','buffer','unknown')),
  backend TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ready','waitroom','morgue','unknown'))
);

CREATE TABLE IF NOT EXISTS partitions (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS site_partitions (
  site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  partition_id INTEGER NOT NULL REFERENCES partitions (id) ON DELETE CASCADE,
  quota INTEGER NOT NULL,
  PRIMARY KEY (site_id, partition_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS site_partitions_partition ON site_partitions (partition_id);

-- the original Dynamo's site and partition settings (see mysql.sql)
CREATE TABLE IF NOT EXISTS site_options (
  site_id INTEGER NOT NULL PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
  filename_mapping TEXT NOT NULL,
  x509proxy TEXT NULL
);

CREATE TABLE IF NOT EXISTS partition_options (
  partition_id INTEGER NOT NULL PRIMARY KEY REFERENCES partitions (id) ON DELETE CASCADE,
  cond TEXT NULL,
  parent_id INTEGER NULL
);

CREATE TABLE IF NOT EXISTS datasets (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL CHECK (status IN ('unknown','deleted','deprecated','invalid','production','valid','ignored')),
  data_type TEXT NOT NULL CHECK (data_type IN ('unknown','production','test')),
  software_version TEXT NULL,
  last_update INTEGER NOT NULL,
  is_open INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS blocks (
  id INTEGER NOT NULL PRIMARY KEY,
  dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  size INTEGER NOT NULL,
  num_files INTEGER NOT NULL,
  is_open INTEGER NOT NULL,
  last_update INTEGER NOT NULL,
  UNIQUE (dataset_id, name)
);

CREATE TABLE IF NOT EXISTS block_files (
  block_id INTEGER NOT NULL PRIMARY KEY REFERENCES blocks (id) ON DELETE CASCADE,
  files BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS dataset_replicas (
  dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
  site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  growing INTEGER NOT NULL,
  group_id INTEGER NULL REFERENCES owner_groups (id) ON DELETE SET NULL,
  block_replicas BLOB NOT NULL,
  PRIMARY KEY (dataset_id, site_id)
);
CREATE INDEX IF NOT EXISTS dataset_replicas_site ON dataset_replicas (site_id);
CREATE INDEX IF NOT EXISTS dataset_replicas_group ON dataset_replicas (group_id);

CREATE TABLE IF NOT EXISTS journal (
  seq INTEGER NOT NULL PRIMARY KEY,
  time REAL NOT NULL,
  user TEXT NOT NULL,
  dn TEXT NOT NULL,
  title TEXT NOT NULL,
  checksum TEXT NOT NULL,
  run_id INTEGER NOT NULL,
  num_records INTEGER NOT NULL,
  pruned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS journal_time ON journal (time);

CREATE TABLE IF NOT EXISTS journal_chunks (
  seq INTEGER NOT NULL REFERENCES journal (seq) ON DELETE CASCADE,
  chunk INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (seq, chunk)
) WITHOUT ROWID;

-- The server's tables (users and roles, authorized applications, application records) are in a
-- database file of their own: sqlite-registry.sql (docs/stores.md).
