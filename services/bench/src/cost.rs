//! What a stretch of engine work cost the machine, per event: CPU time of the engine, of
//! PostgreSQL and of the broker, and the WAL PostgreSQL wrote.
//!
//! - CPU comes from `/proc/<pid>/stat` (user + system time of every thread), so it is measured
//!   only for processes on this machine: the engine always; PostgreSQL's processes that serve
//!   the scenario's database plus its background processes (WAL writer, checkpointer,
//!   autovacuum…), found in `pg_stat_activity`; the broker listening on the scenario's bootstrap
//!   address, among those whose pids `deploy/local` recorded (`$KIZUNA_STATE_DIR`, default
//!   `/var/lib/kizuna-local`).
//! - WAL bytes come from the WAL position (`pg_current_wal_lsn`), records and full-page images
//!   from `pg_stat_wal`; both are cluster-wide (other databases' writes in the same window count
//!   too).
//!
//! A figure that cannot be read is left out (`None`) rather than guessed.

use std::collections::HashMap;
use std::path::PathBuf;

use sqlx::PgPool;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of process `pid` (all its threads, live and exited), or None when
/// it is not readable (gone, or not on this machine).
fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// The inodes of the sockets listening on TCP `port` (`/proc/net/tcp` and `tcp6`).
fn listening_inodes(port: u16) -> Vec<String> {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local_address is field 1, st field 3 (0A: LISTEN), inode field 9.
                    let listening = fields.get(1)?.ends_with(&local) && *fields.get(3)? == "0A";
                    listening.then(|| fields.get(9).map(|i| (*i).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The pid of the broker that listens on `brokers`' first address, among those `deploy/local`
/// started (its pid files in `$KIZUNA_STATE_DIR`, default `/var/lib/kizuna-local`), or None.
fn broker_pid(brokers: &str) -> Option<u32> {
    let port: u16 = brokers
        .split(',')
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    let inodes = listening_inodes(port);
    let dir = PathBuf::from(
        std::env::var("KIZUNA_STATE_DIR").unwrap_or_else(|_| "/var/lib/kizuna-local".into()),
    );
    let listens = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|link| {
                inodes
                    .iter()
                    .any(|i| link.to_string_lossy() == format!("socket:[{i}]"))
            })
    };
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".pid").then(|| dir.join(name))
        })
        .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u32>().ok())
        .find(|&pid| listens(pid))
}

/// The figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    engine: Option<f64>,
    /// CPU seconds per PostgreSQL pid.
    postgres: Option<HashMap<u32, f64>>,
    broker: Option<f64>,
    /// (WAL position in bytes, records and full-page images since the statistics were reset).
    wal: Option<(f64, f64, f64)>,
}

/// Reads the cost figures of a scenario's engine and database.
#[derive(Debug, Clone)]
pub struct Meter {
    engine_pid: u32,
    database: String,
    /// Found once: the broker does not change during a scenario.
    broker_pid: Option<u32>,
    ticks: f64,
}

impl Meter {
    /// `brokers`: the bootstrap addresses the scenario uses; empty for a scenario without one.
    pub fn new(engine_pid: u32, database: &str, brokers: &str) -> Self {
        Self {
            engine_pid,
            database: database.to_owned(),
            broker_pid: broker_pid(brokers),
            ticks: clock_ticks(),
        }
    }

    pub async fn snapshot(&self, pool: &PgPool) -> Snapshot {
        let postgres = self.postgres_pids(pool).await.map(|pids| {
            pids.into_iter()
                .filter_map(|p| cpu_seconds(p, self.ticks).map(|c| (p, c)))
                .collect::<HashMap<_, _>>()
        });
        let broker = self.broker_pid.and_then(|p| cpu_seconds(p, self.ticks));
        // Bytes from the WAL position itself (exact at any moment); records and full-page images
        // from pg_stat_wal, which backends update when they flush their statistics (at most about
        // once a second), so over short windows those two lag.
        let wal = sqlx::query_as::<_, (f64, f64, f64)>(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8, \
                    wal_records::float8, wal_fpi::float8 FROM pg_stat_wal",
        )
        .fetch_one(pool)
        .await
        .ok();
        Snapshot {
            engine: cpu_seconds(self.engine_pid, self.ticks),
            postgres: postgres.filter(|m| !m.is_empty()),
            broker,
            wal,
        }
    }

    /// The backends of this database and every background process of the server.
    async fn postgres_pids(&self, pool: &PgPool) -> Option<Vec<u32>> {
        let rows: Vec<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 OR backend_type <> 'client backend'",
        )
        .bind(&self.database)
        .fetch_all(pool)
        .await
        .ok()?;
        Some(
            rows.into_iter()
                .filter_map(|(p,)| u32::try_from(p).ok())
                .collect(),
        )
    }
}

/// What the events between two snapshots cost, per event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub events: u64,
    /// CPU microseconds per event.
    pub engine_us: Option<f64>,
    pub postgres_us: Option<f64>,
    pub broker_us: Option<f64>,
    /// WAL bytes, records and full-page images per event.
    pub wal_bytes: Option<f64>,
    pub wal_records: Option<f64>,
    pub wal_fpi: Option<f64>,
}

impl Cost {
    /// The cost of `events` events applied between `from` and `to`. A PostgreSQL process
    /// counts with what it used in the window: its time at `to` less its time at `from` (zero
    /// when it started inside the window).
    pub fn between(from: &Snapshot, to: &Snapshot, events: u64) -> Self {
        let n = events.max(1) as f64;
        let per_event_us = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0) * 1e6 / n);
        let postgres = match (&from.postgres, &to.postgres) {
            (Some(a), Some(b)) => Some(
                b.iter()
                    .map(|(pid, t)| (t - a.get(pid).copied().unwrap_or(0.0)).max(0.0))
                    .sum::<f64>()
                    * 1e6
                    / n,
            ),
            _ => None,
        };
        let wal = |f: fn(&(f64, f64, f64)) -> f64| {
            Some((f(to.wal.as_ref()?) - f(from.wal.as_ref()?)).max(0.0) / n)
        };
        Self {
            events,
            engine_us: per_event_us(from.engine, to.engine),
            postgres_us: postgres,
            broker_us: per_event_us(from.broker, to.broker),
            wal_bytes: wal(|w| w.0),
            wal_records: wal(|w| w.1),
            wal_fpi: wal(|w| w.2),
        }
    }

    /// CPU of the three processes together, when all three were read.
    pub fn total_us(&self) -> Option<f64> {
        Some(self.engine_us? + self.postgres_us? + self.broker_us?)
    }

    /// The mean of each figure over `costs` (a figure missing from any is left out); None
    /// for no costs.
    pub fn mean(costs: &[Cost]) -> Option<Self> {
        let n = costs.len();
        if n == 0 {
            return None;
        }
        let mean = |f: fn(&Cost) -> Option<f64>| {
            costs
                .iter()
                .map(f)
                .sum::<Option<f64>>()
                .map(|s| s / n as f64)
        };
        Some(Self {
            events: costs.iter().map(|c| c.events).sum::<u64>() / n as u64,
            engine_us: mean(|c| c.engine_us),
            postgres_us: mean(|c| c.postgres_us),
            broker_us: mean(|c| c.broker_us),
            wal_bytes: mean(|c| c.wal_bytes),
            wal_records: mean(|c| c.wal_records),
            wal_fpi: mean(|c| c.wal_fpi),
        })
    }

    /// What this cost adds to `base`, per event: `CPU engine +5.1 µs, PostgreSQL +3.0 µs,
    /// broker +0.9 µs (+9.0 µs); WAL +0.80 kB`.
    pub fn added_to(&self, base: &Cost) -> String {
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:+.1} µs"));
        let mut s = format!(
            "CPU engine {}, PostgreSQL {}, broker {}",
            us(diff(self.engine_us, base.engine_us)),
            us(diff(self.postgres_us, base.postgres_us)),
            us(diff(self.broker_us, base.broker_us))
        );
        if let Some(t) = diff(self.total_us(), base.total_us()) {
            s.push_str(&format!(" ({t:+.1} µs)"));
        }
        if let Some(b) = diff(self.wal_bytes, base.wal_bytes) {
            s.push_str(&format!("; WAL {:+.2} kB", b / 1000.0));
        }
        s
    }

    /// `per event: CPU engine 24.1 µs, PostgreSQL 35.0 µs, broker 3.2 µs (62.3 µs); WAL 2.1 kB,
    /// 9.0 records, 0.02 full pages`.
    pub fn note(&self) -> String {
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} µs"));
        let mut s = format!(
            "per event: CPU engine {}, PostgreSQL {}, broker {}",
            us(self.engine_us),
            us(self.postgres_us),
            us(self.broker_us)
        );
        if let Some(t) = self.total_us() {
            s.push_str(&format!(" ({t:.1} µs)"));
        }
        if let (Some(b), Some(r), Some(f)) = (self.wal_bytes, self.wal_records, self.wal_fpi) {
            s.push_str(&format!(
                "; WAL {:.2} kB, {r:.1} records, {f:.3} full pages",
                b / 1000.0
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(engine: f64, pg: &[(u32, f64)], broker: f64, wal: (f64, f64, f64)) -> Snapshot {
        Snapshot {
            engine: Some(engine),
            postgres: Some(pg.iter().copied().collect()),
            broker: Some(broker),
            wal: Some(wal),
        }
    }

    #[test]
    fn cost_per_event_counts_each_postgres_process_from_its_own_start() {
        let from = snap(1.0, &[(10, 5.0), (11, 1.0)], 2.0, (1000.0, 10.0, 1.0));
        // pid 11 ended (its time is lost, not negative); pid 12 started in the window.
        let to = snap(3.0, &[(10, 6.0), (12, 0.5)], 2.5, (5000.0, 50.0, 3.0));
        let c = Cost::between(&from, &to, 1000);
        let close = |a: Option<f64>, b: f64| (a.expect("measured") - b).abs() < 1e-9;
        assert!(close(c.engine_us, 2000.0), "{c:?}");
        assert!(close(c.postgres_us, 1500.0), "{c:?}");
        assert!(close(c.broker_us, 500.0), "{c:?}");
        assert!(close(c.total_us(), 4000.0), "{c:?}");
        assert!(close(c.wal_bytes, 4.0), "{c:?}");
        assert!(close(c.wal_records, 0.04), "{c:?}");
        assert!(close(c.wal_fpi, 0.002), "{c:?}");
    }

    #[test]
    fn the_mean_and_the_difference_of_costs() {
        let c = |engine: f64, wal: Option<f64>| Cost {
            events: 10,
            engine_us: Some(engine),
            postgres_us: Some(2.0 * engine),
            broker_us: Some(1.0),
            wal_bytes: wal,
            wal_records: Some(1.0),
            wal_fpi: Some(0.0),
        };
        let m = Cost::mean(&[c(10.0, Some(1000.0)), c(20.0, None)]).expect("two costs");
        assert_eq!(m.engine_us, Some(15.0));
        assert_eq!(m.postgres_us, Some(30.0));
        assert_eq!(m.wal_bytes, None, "missing from one run: left out");
        assert_eq!(Cost::mean(&[]), None);
        let added = c(20.0, Some(3000.0)).added_to(&c(10.0, Some(1000.0)));
        assert_eq!(
            added,
            "CPU engine +10.0 µs, PostgreSQL +20.0 µs, broker +0.0 µs (+30.0 µs); WAL +2.00 kB"
        );
    }

    #[test]
    fn a_figure_not_read_at_either_end_is_left_out() {
        let from = Snapshot {
            engine: Some(1.0),
            ..Snapshot::default()
        };
        let to = snap(2.0, &[(10, 1.0)], 1.0, (1.0, 1.0, 1.0));
        let c = Cost::between(&from, &to, 10);
        assert!(c.engine_us.is_some());
        assert_eq!(
            (c.postgres_us, c.broker_us, c.wal_bytes, c.total_us()),
            (None, None, None, None)
        );
        assert!(c.note().contains("PostgreSQL -"), "{}", c.note());
    }

    #[test]
    fn a_listening_socket_is_found_by_its_port_and_no_broker_without_an_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        assert_eq!(listening_inodes(port).len(), 1, "port {port}");
        drop(listener);
        assert!(listening_inodes(port).is_empty(), "port {port} closed");
        assert_eq!(broker_pid(""), None);
        assert_eq!(broker_pid("no-port-here"), None);
    }

    #[test]
    fn this_process_cpu_time_is_readable_and_grows() {
        let ticks = clock_ticks();
        let pid = std::process::id();
        let before = cpu_seconds(pid, ticks).expect("own /proc stat");
        // Spin until the kernel has charged this process a tick more (10 ms at 100 Hz).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let mut after = before;
        while after <= before && std::time::Instant::now() < deadline {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            after = cpu_seconds(pid, ticks).expect("own /proc stat");
        }
        std::hint::black_box(x);
        assert!(after > before, "{before} -> {after}");
        assert_eq!(cpu_seconds(u32::MAX, ticks), None);
    }
}
