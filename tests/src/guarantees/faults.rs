//! Faults that disturb everyone on the machine: PostgreSQL stopped (a broker restart is
//! [`crate::Broker::restart`]). Tests that use them run alone (`tests/tests/disruptive.rs`).

use anyhow::{Context, ensure};

// 4. and 5. Outages (disruptive: run alone, see tests/run.sh)

/// The PostgreSQL cluster behind 127.0.0.1:5432, as (version, name): `KIZUNA_TEST_PG_CLUSTER`
/// ("15/main"), else the cluster `pg_lsclusters` lists on port 5432.
pub fn pg_cluster() -> anyhow::Result<(String, String)> {
    if let Ok(c) = std::env::var("KIZUNA_TEST_PG_CLUSTER") {
        let (v, n) = c
            .split_once('/')
            .context("KIZUNA_TEST_PG_CLUSTER must look like 15/main")?;
        return Ok((v.to_owned(), n.to_owned()));
    }
    let out = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .context("running pg_lsclusters (Debian's postgresql-common)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "5432")
        .map(|f| (f[0].to_owned(), f[1].to_owned()))
        .context("no PostgreSQL cluster on port 5432 in pg_lsclusters")
}

pub fn pg_ctl(cluster: &(String, String), action: &str) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("pg_ctlcluster");
    cmd.args([cluster.0.as_str(), cluster.1.as_str(), action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running pg_ctlcluster {action}"))?;
    ensure!(
        out.status.success(),
        "pg_ctlcluster {} {} {action}: {}{}",
        cluster.0,
        cluster.1,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// PostgreSQL stopped; started again when dropped, whatever happens to the test.
#[derive(Debug)]
pub struct PgStopped {
    pub cluster: (String, String),
    pub started: bool,
}

impl PgStopped {
    pub fn stop() -> anyhow::Result<Self> {
        let cluster = pg_cluster()?;
        pg_ctl(&cluster, "stop")?;
        Ok(Self {
            cluster,
            started: false,
        })
    }

    pub fn start(mut self) -> anyhow::Result<()> {
        self.started = true;
        pg_ctl(&self.cluster, "start")
    }
}

impl Drop for PgStopped {
    fn drop(&mut self) {
        if !self.started
            && let Err(e) = pg_ctl(&self.cluster, "start")
        {
            eprintln!("could not start PostgreSQL again: {e:#}");
        }
    }
}
