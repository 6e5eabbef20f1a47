//! The in-process services' logs: captured in memory for tests that check what is logged, and
//! shown on the test's stderr with `KIZUNA_TEST_LOG=1` (or `TEST_LOG=1`), as the engine
//! processes' are (see `kizuna_testkit::process::show_engine_logs`).
//!
//! A process has one log subscriber, and the first installed wins: [`LogCapture::install`]
//! installs it once per test binary, and every later call shares that capture.

use std::io::Write;

/// Log lines captured in memory, to check what the services write to their logs.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the services' log subscriber (JSON, `info`) writing here, once per test
    /// binary: later calls (the same test on another broker) share the first capture, since
    /// only the first subscriber installed takes effect. Every test's logs land in it.
    pub fn install() -> Self {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = Self::default();
                kizuna::telemetry::init(
                    kizuna::config::LogFormat::Json,
                    "info,sqlx=warn",
                    capture.clone(),
                );
                capture
            })
            .clone()
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// With `KIZUNA_TEST_LOG=1` (or `TEST_LOG=1`), installs the capture, which then also copies
/// every line to the test's stderr: the logs of the engine, gateway and delivery service
/// running in-process.
pub fn show_if_asked() {
    if kizuna_testkit::process::show_engine_logs() {
        LogCapture::install();
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        if kizuna_testkit::process::show_engine_logs() {
            // Straight to stderr, past the test harness's capture, as the engine processes'.
            std::io::stderr().write_all(buf).ok();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
