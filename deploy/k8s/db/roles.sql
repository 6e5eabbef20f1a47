-- Kizuna's PostgreSQL roles: a migration owner and a least-privilege runtime role.
--
-- Run once per database, as a superuser or the managed-service admin (a role with CREATEROLE
-- and CREATEDB that may act for the roles it creates), BEFORE the first `kizuna migrate`:
--
--   psql "postgres://admin@db-host:5432/postgres" \
--     -v db=kizuna -v schema=kizuna \
--     -v owner=kizuna_owner -v owner_password="$OWNER_PASSWORD" \
--     -v app=kizuna_app     -v app_password="$APP_PASSWORD" \
--     -f deploy/k8s/db/roles.sql
--
-- Every -v has a default (below) except the passwords. Idempotent: a second run changes
-- nothing but the passwords. It:
--   * creates the roles (LOGIN; no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS);
--   * creates the database owned by the owner role, and in it the schema Kizuna's tables live
--     in, also owned by the owner role;
--   * sets search_path = <schema> for both roles in that database (the engine uses unqualified
--     table names, and sqlx keeps _sqlx_migrations in the first schema of the search path);
--   * gives the runtime role CONNECT, USAGE on the schema, SELECT/INSERT/UPDATE/DELETE on the
--     tables and USAGE/SELECT on the sequences, for the tables that exist and, through default
--     privileges, for every table a later migration creates; nothing else: no CREATE on any
--     schema, no TEMPORARY, no TRUNCATE, no ownership (so no ALTER/DROP).
-- Run deploy/k8s/db/after-migrate.sql once after the first migration to take write access
-- to sqlx's _sqlx_migrations away from the runtime role.
\set ON_ERROR_STOP on
\if :{?db}
\else
  \set db kizuna
\endif
\if :{?schema}
\else
  \set schema kizuna
\endif
\if :{?owner}
\else
  \set owner kizuna_owner
\endif
\if :{?app}
\else
  \set app kizuna_app
\endif
\if :{?owner_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'roles.sql: pass -v owner_password=...'; END $$;
\endif
\if :{?app_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'roles.sql: pass -v app_password=...'; END $$;
\endif

-- Roles. NOINHERIT on the runtime role: it gets only what is granted to it by name.
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT', :'app')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"owner" PASSWORD :'owner_password';
ALTER ROLE :"app" PASSWORD :'app_password';

-- The database, owned by the migration owner.
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";
ALTER ROLE :"owner" IN DATABASE :"db" SET search_path = :"schema";
ALTER ROLE :"app" IN DATABASE :"db" SET search_path = :"schema";

\connect :"db"
\set ON_ERROR_STOP on
-- PostgreSQL 15+ already keeps PUBLIC from creating in "public"; older servers do not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"owner";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
GRANT USAGE ON SCHEMA :"schema" TO :"app";

-- Tables and sequences the owner creates from now on (every `kizuna migrate`).
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema"
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema"
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";

-- Tables that already exist (running this on a database migrated before the roles existed:
-- also `ALTER TABLE … OWNER TO <owner>` them first, or run `REASSIGN OWNED BY old TO <owner>`).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"app";
