-- Optional hardening, once after the first `kizuna migrate`, as the owner role (or an admin):
--
--   psql "postgres://kizuna_owner@db-host:5432/kizuna" -v app=kizuna_app -f deploy/k8s/db/after-migrate.sql
--
-- The default privileges of roles.sql also gave the runtime role write access to sqlx's
-- _sqlx_migrations, which the owner creates during the first migration. A runtime that does
-- not migrate (database.migrate_on_start = false) never writes it: keep SELECT (to see the
-- schema version), take the rest away. Later migrations do not re-create the table, so this
-- holds. Idempotent.
\set ON_ERROR_STOP on
\if :{?app}
\else
  \set app kizuna_app
\endif
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE _sqlx_migrations FROM :"app";
GRANT SELECT ON TABLE _sqlx_migrations TO :"app";
