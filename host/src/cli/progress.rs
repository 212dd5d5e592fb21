//! The progress bar of the command line: the job layer's [`Progress`] drawn by indicatif on
//! stderr, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use crate::job::Progress;

/// A bar per stage (frames, then sweeps).
#[derive(Debug, Default)]
pub struct Bar(Mutex<Option<indicatif::ProgressBar>>);

impl Bar {
    /// A bar when stderr is a terminal, else `None` (nothing to draw on).
    pub fn on_terminal() -> Option<Arc<dyn Progress>> {
        std::io::stderr()
            .is_terminal()
            .then(|| Arc::new(Bar::default()) as Arc<dyn Progress>)
    }

    fn with(&self, f: impl FnOnce(&mut Option<indicatif::ProgressBar>)) {
        // A poisoned lock only loses the bar.
        if let Ok(mut bar) = self.0.lock() {
            f(&mut bar);
        }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let bar = indicatif::ProgressBar::new(total);
        let template = format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}){{msg}}"
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        self.with(|b| *b = Some(bar));
    }

    fn set(&self, done: u64) {
        self.with(|b| {
            if let Some(bar) = b {
                bar.set_position(done);
            }
        });
    }

    fn waiting(&self, waiting: bool) {
        self.with(|b| {
            if let Some(bar) = b {
                bar.set_message(if waiting { " waiting for frames" } else { "" });
            }
        });
    }

    fn finish(&self) {
        self.with(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        });
    }
}
