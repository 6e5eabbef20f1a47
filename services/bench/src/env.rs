//! Fresh databases, topics and consumer groups for each scenario, and their cleanup (at the
//! end, on failure and on Ctrl-C).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kizuna::config::{Settings, Topics};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use sqlx::{Connection, PgConnection, PgPool};

/// What was created, to remove at the end.
#[derive(Debug, Default)]
pub struct Created {
    pub databases: Vec<String>,
    pub topics: Vec<String>,
    /// Engine processes still running.
    pub pids: Vec<u32>,
}

/// Where the stack is and what to clean up.
#[derive(Debug, Clone)]
pub struct Stack {
    pub brokers: String,
    /// A database URL the role can connect to in order to create others.
    pub admin_url: String,
    pub partitions: i32,
    pub keep: bool,
    pub created: Arc<Mutex<Created>>,
}

/// One scenario's database, topics and consumer group.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    pub id: String,
    pub database: String,
    pub database_url: String,
    pub group_id: String,
    pub topics: Topics,
    pub brokers: String,
}

fn lock(created: &Arc<Mutex<Created>>) -> std::sync::MutexGuard<'_, Created> {
    created
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stack {
    pub fn register_pid(&self, pid: u32) {
        lock(&self.created).pids.push(pid);
    }

    pub fn forget_pid(&self, pid: u32) {
        lock(&self.created).pids.retain(|p| *p != pid);
    }

    async fn admin(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.admin_url)
            .await
            .with_context(|| {
                "connecting to PostgreSQL; is the stack up (deploy/local/up.sh)?".to_owned()
            })
    }

    /// A fresh database, migrated by the engine binary `engine` (`kizuna migrate`, so the schema
    /// is the one that binary expects) or, without one, by the migrations compiled into this
    /// tool; and fresh topics when `kafka`.
    pub async fn env(
        &self,
        scenario: &str,
        kafka: bool,
        engine: Option<&std::path::Path>,
    ) -> anyhow::Result<BenchEnv> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let database = format!("kizuna_bench_{}_{id}", scenario.replace('-', "_"));
        let mut admin = self.admin().await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {database}"))?;
        lock(&self.created).databases.push(database.clone());
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .context("database url without a database name")?;
        let database_url = format!("{base}/{database}");

        let mut settings = Settings::load(None)?;
        settings.kafka.brokers = self.brokers.clone();
        settings.kafka.partitions = self.partitions;
        settings.kafka.topics.add_prefix(&format!("bench-{id}."));
        if kafka {
            {
                let mut created = lock(&self.created);
                let t = &settings.kafka.topics;
                created
                    .topics
                    .extend(t.inputs().into_iter().chain(t.outputs()).map(str::to_owned));
            }
            kizuna::kafka::create_topics(&settings.kafka)
                .await
                .context("creating the bench topics; is the broker up (deploy/local/up.sh)?")?;
        }
        match engine {
            Some(bin) => {
                let (bin, url) = (bin.to_owned(), database_url.clone());
                tokio::task::spawn_blocking(move || crate::engine::migrate(&bin, &url)).await??;
            }
            None => {
                let pool = PgPool::connect(&database_url).await?;
                kizuna::store::migrate(&pool).await?;
                pool.close().await;
            }
        }
        Ok(BenchEnv {
            group_id: format!("kizuna-bench-{id}"),
            id,
            database,
            database_url,
            topics: settings.kafka.topics,
            brokers: self.brokers.clone(),
        })
    }

    /// Drops one environment's database and deletes its topics.
    pub async fn drop_env(&self, env: &BenchEnv) {
        if self.keep {
            return;
        }
        let t = &env.topics;
        let topics: Vec<String> = t
            .inputs()
            .into_iter()
            .chain(t.outputs())
            .map(str::to_owned)
            .collect();
        self.remove(std::slice::from_ref(&env.database), &topics)
            .await;
        let mut created = lock(&self.created);
        created.databases.retain(|d| *d != env.database);
        created.topics.retain(|t| !topics.contains(t));
    }

    /// Removes everything still registered: engines, databases, topics.
    pub async fn cleanup_all(&self) {
        let (dbs, topics, pids) = {
            let mut c = lock(&self.created);
            (
                std::mem::take(&mut c.databases),
                std::mem::take(&mut c.topics),
                std::mem::take(&mut c.pids),
            )
        };
        for pid in pids {
            crate::engine::kill_pid(pid, true);
        }
        if self.keep {
            if !dbs.is_empty() || !topics.is_empty() {
                eprintln!(
                    "kizuna-bench: --keep: left databases {} and {} topics",
                    dbs.join(", "),
                    topics.len()
                );
            }
            return;
        }
        self.remove(&dbs, &topics).await;
    }

    /// Removes the databases and topics earlier runs left behind (`--keep`, or a run killed
    /// before it could clean up): databases `kizuna_bench_…` and topics `bench-<id>.…`.
    pub async fn remove_leftovers(&self) -> anyhow::Result<(usize, usize)> {
        let mut admin = self.admin().await?;
        let dbs: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'kizuna\\_bench\\_%'",
        )
        .fetch_all(&mut admin)
        .await?;
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let md =
            rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, Duration::from_secs(10))?;
        let topics: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| is_bench_topic(name))
            .collect();
        self.remove(&dbs, &topics).await;
        Ok((dbs.len(), topics.len()))
    }

    async fn remove(&self, databases: &[String], topics: &[String]) {
        const DROP_WAIT: Duration = Duration::from_secs(300);
        if !databases.is_empty() {
            match self.admin().await {
                Ok(mut admin) => {
                    for db in databases {
                        // An autovacuum worker in the database cannot be terminated by a
                        // non-superuser: wait for it to finish (after a run that wrote
                        // millions of rows, that takes minutes).
                        let started = std::time::Instant::now();
                        let mut tries = 0u32;
                        loop {
                            let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                            match sqlx::query(&sql).execute(&mut admin).await {
                                Ok(_) => break,
                                Err(e) if started.elapsed() < DROP_WAIT => {
                                    if tries.is_multiple_of(20) {
                                        eprintln!(
                                            "kizuna-bench: dropping {db}: {e}; retrying for up to {} s",
                                            DROP_WAIT.saturating_sub(started.elapsed()).as_secs()
                                        );
                                    }
                                    tries += 1;
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                }
                                Err(e) => {
                                    eprintln!(
                                        "kizuna-bench: could not drop database {db}: {e}; \
                                         `kizuna-bench clean` removes it later"
                                    );
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => eprintln!("kizuna-bench: could not drop databases: {e:#}"),
            }
        }
        if !topics.is_empty() {
            let client: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
                .create();
            match client {
                Ok(client) => {
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                    if let Err(e) = client.delete_topics(&names, &opts).await {
                        eprintln!("kizuna-bench: could not delete topics: {e}");
                    }
                }
                Err(e) => eprintln!("kizuna-bench: could not delete topics: {e}"),
            }
        }
    }
}

/// `bench-<10 hex digits>.<name>`, the topics this tool creates.
fn is_bench_topic(name: &str) -> bool {
    name.strip_prefix("bench-")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(id, _)| id.len() == 10 && id.chars().all(|c| c.is_ascii_hexdigit()))
}

impl BenchEnv {
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await?)
    }

    pub fn topic(&self, input: crate::workload::Input) -> &str {
        use crate::workload::Input;
        match input {
            Input::Purchases => &self.topics.purchases,
            Input::Tickets => &self.topics.support_tickets,
            Input::Surveys => &self.topics.surveys,
        }
    }

    /// Messages applied so far: the sum of the stored next offsets (topics start at 0).
    pub async fn applied(&self, pool: &PgPool) -> anyhow::Result<i64> {
        let sum: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(next_offset), 0)::bigint FROM consumer_offsets WHERE group_id = $1",
        )
        .bind(&self.group_id)
        .fetch_one(pool)
        .await?;
        Ok(sum)
    }
}

/// Facts about the machine, printed at the top.
pub fn machine_facts() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "unknown".into());
    vec![
        ("date".into(), chrono::Utc::now().to_rfc3339()),
        ("nproc".into(), nproc),
        ("cpu".into(), cpu),
        ("memory".into(), mem),
        (
            "kernel".into(),
            format!(
                "{} {}",
                read("/proc/sys/kernel/ostype").trim(),
                read("/proc/sys/kernel/osrelease").trim()
            ),
        ),
        (
            "load average".into(),
            read("/proc/loadavg").trim().to_owned(),
        ),
        // Latency depends on it: PostgreSQL's growing tables and Kafka's log are written back
        // by the kernel once their dirty pages are this old, all at once, and commits wait
        // behind that burst (see the README's performance section).
        (
            "writeback".into(),
            format!(
                "vm.dirty_expire_centisecs={} vm.dirty_writeback_centisecs={}",
                read("/proc/sys/vm/dirty_expire_centisecs").trim(),
                read("/proc/sys/vm/dirty_writeback_centisecs").trim()
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_its_own_topics() {
        assert!(is_bench_topic("bench-0123456789.purchases"));
        assert!(is_bench_topic("bench-abcdef0123.loyalty.churn-risk"));
        assert!(!is_bench_topic("purchases"));
        assert!(!is_bench_topic("test-0123456789ab.purchases"));
        assert!(!is_bench_topic("bench-xyz.purchases"));
    }
}
