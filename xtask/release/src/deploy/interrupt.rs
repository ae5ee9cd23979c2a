//! SIGINT (Ctrl-C) and SIGTERM (what a CI runner sends a cancelled job's processes) while the
//! deploy holds its lease: caught, so that the roll-out stops between two awaits and what it
//! changed is rolled back before the process exits. Once installed the handlers stay: a second
//! signal during the rollback does not kill it (SIGKILL does, and leaves the journal for
//! `cargo xtask deploy --rollback`).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The installed handlers.
#[derive(Debug)]
pub(crate) struct Interrupt {
    int: Signal,
    term: Signal,
}

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signalled {
    Int,
    Term,
}

impl Signalled {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as shells report a process the signal ended.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Int => 130,
            Self::Term => 143,
        }
    }
}

impl Interrupt {
    pub(crate) fn install() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal.
    pub(crate) async fn wait(&mut self) -> Signalled {
        tokio::select! {
            _ = self.int.recv() => Signalled::Int,
            _ = self.term.recv() => Signalled::Term,
        }
    }
}
