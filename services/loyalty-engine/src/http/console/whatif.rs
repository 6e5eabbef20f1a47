//! The console's what-if job: in progress, done or failed (one at a time).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::programme::Programme;
use crate::engine::recompute::WhatIfReport;

/// The what-if in progress or done.
#[derive(Debug, Default, Clone)]
pub enum WhatIfJob {
    #[default]
    Idle,
    Running {
        done: u64,
        total: u64,
        form: BTreeMap<String, String>,
    },
    Done {
        report: WhatIfReport,
        form: BTreeMap<String, String>,
        programme: Box<Programme>,
        finished: DateTime<Utc>,
    },
    Failed {
        message: String,
        form: BTreeMap<String, String>,
    },
}

impl WhatIfJob {
    pub fn form(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            WhatIfJob::Idle => None,
            WhatIfJob::Running { form, .. }
            | WhatIfJob::Done { form, .. }
            | WhatIfJob::Failed { form, .. } => Some(form),
        }
    }
}
