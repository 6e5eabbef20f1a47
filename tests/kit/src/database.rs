//! Fresh PostgreSQL databases: created through an "admin" URL (any database the role can
//! connect to, whose role may create databases), dropped with `WITH (FORCE)`, retried while
//! something still holds them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection};

/// A connection to the admin database, with a hint when PostgreSQL is not there.
pub async fn admin(admin_url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(admin_url)
        .await
        .context("connecting to PostgreSQL; is the stack up (deploy/local/up.sh)?")
}

/// The URL of database `name` on the server (and with the role) of `admin_url`.
pub fn url_of(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("database url without a database name")?;
    Ok(format!("{base}/{name}"))
}

/// Names are written into the statements: only lowercase letters, digits and `_`.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("{name:?} is not a database name this kit creates ([a-z0-9_], at most 63)");
    }
    Ok(())
}

/// Creates the empty database `name`; returns its URL.
pub async fn create(admin_url: &str, name: &str) -> anyhow::Result<String> {
    check_name(name)?;
    let mut conn = admin(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    url_of(admin_url, name)
}

/// Drops database `name` if it exists. `WITH (FORCE)` ends its sessions, but a non-superuser
/// cannot end an autovacuum worker (after a run that wrote millions of rows, it may work for
/// minutes): the drop is retried for up to `patience`, with a line on stderr every 10 s.
pub async fn drop(admin_url: &str, name: &str, patience: Duration) -> anyhow::Result<()> {
    check_name(name)?;
    let mut conn = admin(admin_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let started = Instant::now();
    let mut last_note = started;
    loop {
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < patience => {
                if last_note.elapsed() >= Duration::from_secs(10) {
                    last_note = Instant::now();
                    eprintln!(
                        "dropping database {name}: {e}; retrying for up to {} s",
                        patience.saturating_sub(started.elapsed()).as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("dropping database {name}"));
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Databases whose names start with `prefix` (e.g. leftovers of killed runs).
pub async fn list(admin_url: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = admin(admin_url).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await?;
    conn.close().await.ok();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_server_and_role() -> anyhow::Result<()> {
        assert_eq!(
            url_of("postgres://u:p@127.0.0.1:5432/kizuna", "kizuna_test_ab12")?,
            "postgres://u:p@127.0.0.1:5432/kizuna_test_ab12"
        );
        assert!(url_of("nourl", "x").is_err());
        Ok(())
    }

    #[test]
    fn only_plain_names_are_accepted() {
        assert!(check_name("kizuna_bench_ceiling_0a1b").is_ok());
        assert!(check_name("x; DROP DATABASE kizuna").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name("").is_err());
    }
}
