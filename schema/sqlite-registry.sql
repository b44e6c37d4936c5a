-- Dynamo's registry on SQLite: users and roles, authorized applications, application records.
-- A database file of its own beside the inventory's (inventory.db -> inventory-registry.db), so that
-- its rows never wait for the inventory's write lock (a change set being committed). Same tables and
-- meaning as in mysql.sql, where they share the inventory's database.

CREATE TABLE IF NOT EXISTS registry_meta (
  name TEXT NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  dn TEXT NULL UNIQUE,
  email TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS user_roles (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role TEXT NOT NULL,
  target TEXT NOT NULL,
  PRIMARY KEY (user_id, role, target)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS app_authorizations (
  title TEXT NOT NULL,
  user TEXT NOT NULL,
  checksum TEXT NOT NULL,
  authorized_by TEXT NOT NULL,
  time REAL NOT NULL,
  PRIMARY KEY (title, user)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS applications (
  id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL,
  user TEXT NOT NULL,
  write_access INTEGER NOT NULL,
  script TEXT NOT NULL,
  checksum TEXT NOT NULL,
  args TEXT NOT NULL,
  status TEXT NOT NULL,
  exit_code INTEGER NULL,
  message TEXT NOT NULL,
  server TEXT NOT NULL,
  pid INTEGER NULL,
  work_area TEXT NOT NULL,
  submitted REAL NOT NULL,
  started REAL NULL,
  ended REAL NULL,
  version INTEGER NULL
);
CREATE INDEX IF NOT EXISTS applications_status ON applications (status);
