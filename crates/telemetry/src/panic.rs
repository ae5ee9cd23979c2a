//! Panics become Error Reporting events. The hook records where a panic happened; inside a
//! request the HTTP middleware (which catches the unwind) reports it with the request attached,
//! elsewhere the hook reports it at once.

use std::cell::RefCell;

/// What a panic left behind for the code that catches it.
#[derive(Debug, Clone)]
pub struct PanicReport {
    pub message: String,
    pub file: String,
    pub line: u32,
    /// The panicking function, when the backtrace can name it.
    pub function: Option<String>,
}

/// Marks an OpenTelemetry context as "inside a request whose panics are caught and reported".
#[derive(Debug, Clone, Copy)]
pub struct CatchesPanics;

thread_local! {
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

/// The report of the last panic on this thread, if any.
pub fn take_panic() -> Option<PanicReport> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// Installs the hook (replacing the default one, which prints to stderr).
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        let (file, line) = info.location().map_or(("<unknown>".to_owned(), 0), |l| {
            (l.file().to_owned(), l.line())
        });
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        let report = PanicReport {
            function: function_at(&backtrace, &file, line),
            message,
            file,
            line,
        };
        let caught = opentelemetry::Context::map_current(|cx| cx.get::<CatchesPanics>().is_some());
        if caught {
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(report));
        } else {
            let function = report.function.as_deref().unwrap_or("<unknown>");
            tracing::error!(
                context.reportLocation.filePath = %report.file,
                context.reportLocation.lineNumber = report.line,
                context.reportLocation.functionName = %function,
                "panicked at {}:{}: {}\n{backtrace}",
                report.file,
                report.line,
                report.message,
            );
        }
    }));
}

/// The function of the backtrace frame at `file:line` (closures name their enclosing function).
/// Backtraces print paths relative to the working directory or absolute, panic locations relative
/// to the workspace: either may be a suffix of the other.
fn function_at(backtrace: &str, file: &str, line: u32) -> Option<String> {
    let mut function = None;
    for text in backtrace.lines() {
        let text = text.trim();
        if let Some(at) = text.strip_prefix("at ") {
            let mut parts = at.rsplitn(3, ':');
            let (_column, at_line, at_file) = (parts.next(), parts.next(), parts.next());
            let at_file = at_file.unwrap_or_default().trim_start_matches("./");
            if at_line == Some(line.to_string().as_str())
                && !at_file.is_empty()
                && (file.ends_with(at_file) || at_file.ends_with(file))
            {
                return function;
            }
        } else if let Some((number, name)) = text.split_once(": ")
            && number.bytes().all(|b| b.is_ascii_digit())
        {
            let mut name = name.trim();
            while let Some(outer) = name.strip_suffix("::{{closure}}") {
                name = outer;
            }
            function = Some(name.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_panicking_function() {
        let bt = "   0: std::panicking::begin_panic\n             at /rustc/x/library/std/src/panicking.rs:10:5\n   \
                  1: items_service::boom::{{closure}}\n             at ./crates/service/src/lib.rs:42:9\n   \
                  2: main\n";
        assert_eq!(
            function_at(bt, "crates/service/src/lib.rs", 42).as_deref(),
            Some("items_service::boom")
        );
        assert_eq!(function_at(bt, "crates/service/src/lib.rs", 43), None);
        let bt = "  11: telemetry::helpers::boom::{{closure}}\n             at ./tests/telemetry/helpers.rs:70:5\n";
        assert_eq!(
            function_at(bt, "crates/service/tests/telemetry/helpers.rs", 70).as_deref(),
            Some("telemetry::helpers::boom")
        );
    }
}
