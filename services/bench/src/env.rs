//! Fresh databases, topics and consumer groups for each scenario, and their cleanup (at the
//! end, on failure and on Ctrl-C).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kizuna::config::{Settings, Topics};
use kizuna_testkit::{database, topics};
use secrecy::SecretString;
use sqlx::PgPool;

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
    /// The engine's settings for this environment (database, brokers, group, topics).
    pub settings: Settings,
}

fn lock(created: &Arc<Mutex<Created>>) -> std::sync::MutexGuard<'_, Created> {
    created
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stack {
    pub fn new(brokers: &str, admin_url: &str, partitions: i32, keep: bool) -> Self {
        Self {
            brokers: brokers.to_owned(),
            admin_url: admin_url.to_owned(),
            partitions,
            keep,
            created: Arc::new(Mutex::new(Created::default())),
        }
    }

    pub fn register_pid(&self, pid: u32) {
        lock(&self.created).pids.push(pid);
    }

    pub fn forget_pid(&self, pid: u32) {
        lock(&self.created).pids.retain(|p| *p != pid);
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
        let id = kizuna_testkit::fresh_id(10);
        let database = format!("kizuna_bench_{}_{id}", scenario.replace('-', "_"));
        let database_url = database::create(&self.admin_url, &database).await?;
        lock(&self.created).databases.push(database.clone());

        let group_id = format!("kizuna-bench-{id}");
        let mut settings = Settings::load(None)?;
        settings.database.url = SecretString::from(database_url.clone());
        settings.kafka.brokers = self.brokers.clone();
        settings.kafka.group_id = group_id.clone();
        settings.kafka.partitions = self.partitions;
        settings.kafka.session_timeout_ms = 6_000;
        settings.kafka.topics.add_prefix(&format!("bench-{id}."));
        settings.log.level = "warn".into();
        if kafka {
            lock(&self.created)
                .topics
                .extend(topics::names(&settings.kafka.topics));
            topics::create(&settings.kafka).await?;
        }
        match engine {
            Some(bin) => {
                let (bin, settings) = (bin.to_owned(), settings.clone());
                tokio::task::spawn_blocking(move || crate::engine::migrate(&bin, &settings))
                    .await??;
            }
            None => {
                let pool = PgPool::connect(&database_url).await?;
                kizuna::store::migrate(&pool).await?;
                pool.close().await;
            }
        }
        Ok(BenchEnv {
            group_id,
            id,
            database,
            database_url,
            topics: settings.kafka.topics.clone(),
            brokers: self.brokers.clone(),
            settings,
        })
    }

    /// Drops one environment's database and deletes its topics.
    pub async fn drop_env(&self, env: &BenchEnv) {
        if self.keep {
            return;
        }
        let topics = topics::names(&env.topics);
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
            kizuna_testkit::process::signal(pid, true).ok();
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
        let dbs = database::list(&self.admin_url, "kizuna_bench_").await?;
        let topics = topics::list(&self.brokers, is_bench_topic)?;
        self.remove(&dbs, &topics).await;
        Ok((dbs.len(), topics.len()))
    }

    async fn remove(&self, databases: &[String], topics: &[String]) {
        // An autovacuum worker in the database cannot be terminated by a non-superuser: wait
        // for it to finish (after a run that wrote millions of rows, that takes minutes).
        const DROP_WAIT: Duration = Duration::from_secs(300);
        for db in databases {
            if let Err(e) = database::drop(&self.admin_url, db, DROP_WAIT).await {
                eprintln!(
                    "kizuna-bench: could not drop database {db}: {e:#}; \
                     `kizuna-bench clean` removes it later"
                );
            }
        }
        if let Err(e) = topics::delete(&self.brokers, topics).await {
            eprintln!("kizuna-bench: could not delete topics: {e:#}");
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
