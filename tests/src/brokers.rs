//! The two Kafka-protocol brokers every end-to-end test runs on, side by side, as
//! `deploy/local/up.sh` starts them with `KIZUNA_BROKER=both`: Apache Kafka on 127.0.0.1:9092 and
//! tansu on 127.0.0.1:9094.
//!
//! A test body is written once, as `async fn name(broker: Broker) -> anyhow::Result<()>`, and
//! [`on_each_broker!`](crate::on_each_broker) turns it into one test per broker. Where a broker
//! cannot run a test, the reason is written next to the test's name and shows in cargo's output
//! as an ignored test with that reason.
//!
//! Environment:
//! - `KIZUNA_TEST_KAFKA` (default `127.0.0.1:9092`): Apache Kafka's bootstrap address
//! - `KIZUNA_TEST_TANSU` (default `127.0.0.1:9094`): tansu's bootstrap address

use std::path::PathBuf;

use anyhow::{Context, ensure};

/// A Kafka-protocol broker of the local stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Broker {
    /// Apache Kafka (KRaft, data on disk).
    Kafka,
    /// tansu (memory storage by default: a restart forgets every topic).
    Tansu,
}

impl Broker {
    /// Both brokers, Apache Kafka first.
    pub const ALL: [Broker; 2] = [Broker::Kafka, Broker::Tansu];

    /// `kafka` or `tansu`: the name `deploy/local` scripts use.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Kafka => "kafka",
            Broker::Tansu => "tansu",
        }
    }

    /// The bootstrap address (`host:port`) of this broker.
    pub fn address(self) -> String {
        let (var, default) = match self {
            Broker::Kafka => ("KIZUNA_TEST_KAFKA", "127.0.0.1:9092"),
            Broker::Tansu => ("KIZUNA_TEST_TANSU", "127.0.0.1:9094"),
        };
        std::env::var(var).unwrap_or_else(|_| default.into())
    }

    /// Restarts this broker with `deploy/local/restart-broker.sh NAME` (the other broker is not
    /// touched) and returns once it answers again. Apache Kafka keeps its data; tansu with memory
    /// storage loses every topic and message.
    pub fn restart(self) -> anyhow::Result<()> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/restart-broker.sh");
        let out = std::process::Command::new(&script)
            .arg(self.name())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            out.status.success(),
            "{} {} failed: {}\n{}",
            script.display(),
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One test per broker for every test body named.
///
/// ```ignore
/// kizuna_e2e::on_each_broker! {
///     crash_recovery_loses_nothing,
///     broker_restart_resumes: tansu_skip = "memory-only tansu forgets every topic when it restarts",
/// }
///
/// async fn crash_recovery_loses_nothing(broker: Broker) -> anyhow::Result<()> { … }
/// ```
///
/// makes, for each `name`, a module `name` with the tests `name::on_kafka` and `name::on_tansu`
/// (a module and a function may share a name), each on a multi-threaded runtime with four
/// workers. `tansu_skip = "reason"` marks `on_tansu` `#[ignore = "reason"]`, so cargo lists it as
/// ignored with the reason (`--ignored` still runs it). The reason is a string literal, or a
/// macro call that expands to one (to share a reason between tests).
#[macro_export]
macro_rules! on_each_broker {
    ($($name:ident $(: tansu_skip = $reason:expr)?),* $(,)?) => {
        $( $crate::on_each_broker!(@one $name $(, $reason)?); )*
    };
    (@one $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_kafka() -> anyhow::Result<()> {
                super::$name($crate::Broker::Kafka).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_tansu() -> anyhow::Result<()> {
                super::$name($crate::Broker::Tansu).await
            }
        }
    };
    (@one $name:ident, $reason:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_kafka() -> anyhow::Result<()> {
                super::$name($crate::Broker::Kafka).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = $reason]
            async fn on_tansu() -> anyhow::Result<()> {
                super::$name($crate::Broker::Tansu).await
            }
        }
    };
}
