//! Running the two ends of a measurement: each on its own OS thread (and,
//! for async code, its own current-thread Tokio runtime), every wait bounded.

use std::future::Future;
use std::thread;
use std::time::Duration;

/// The longest any one side of one measurement may take. A hung peer ends
/// the measurement with an error after this, never hangs the bench.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// The loopback address every case binds to.
pub(crate) const LOOPBACK: &str = "127.0.0.1:0";

/// Runs `side` to completion on a fresh current-thread runtime on this
/// thread, failing after `limit`. Tasks the side spawned (a link's
/// connection drivers, say) run on that runtime while `side` waits, and are
/// dropped with it.
///
/// `side` runs as a spawned task, as a server's per-connection code would,
/// not as the `block_on` future itself: on a current-thread runtime, a task
/// waking the `block_on` future costs an extra non-blocking `epoll_wait`
/// before that future is polled again (Tokio's scheduler checks the driver
/// first), which would add a system call to every hop between a
/// connection's driver task and the code reading its events.
pub(crate) fn block_on<F, T>(limit: Duration, side: F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building a Tokio runtime: {e}"))?;
    runtime.block_on(async {
        let task = tokio::spawn(async move {
            match tokio::time::timeout(limit, side).await {
                Ok(result) => result,
                Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
            }
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(format!("the side's task failed: {e}")),
        }
    })
}

/// Runs two sides on two named threads and returns both results. When a
/// side fails, its error comes first; the other side's error (often just a
/// consequence, such as "peer gone") follows.
pub(crate) fn pair<A, B, TA, TB>(a: (&str, A), b: (&str, B)) -> Result<(TA, TB), String>
where
    A: FnOnce() -> Result<TA, String> + Send + 'static,
    B: FnOnce() -> Result<TB, String> + Send + 'static,
    TA: Send + 'static,
    TB: Send + 'static,
{
    let (name_a, run_a) = a;
    let (name_b, run_b) = b;
    let thread_a = spawn(name_a, run_a)?;
    let thread_b = match spawn(name_b, run_b) {
        Ok(t) => t,
        Err(e) => {
            // `a` fails on its own once `run_b` (and its channel ends) is gone.
            let _ = join(name_a, thread_a);
            return Err(e);
        }
    };
    let result_a = join(name_a, thread_a);
    let result_b = join(name_b, thread_b);
    match (result_a, result_b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(a), Ok(_)) => Err(a),
        (Ok(_), Err(b)) => Err(b),
        (Err(a), Err(b)) => Err(format!("{a}; and {b}")),
    }
}

fn spawn<T, F>(name: &str, f: F) -> Result<thread::JoinHandle<Result<T, String>>, String>
where
    F: FnOnce() -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| format!("starting thread {name}: {e}"))
}

fn join<T>(name: &str, handle: thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{name}: {e}")),
        Err(_) => Err(format!("{name}: panicked")),
    }
}

/// Turns any displayable error into the harness's `String` error, saying
/// what was being done.
pub(crate) fn ctx<E: std::fmt::Display>(doing: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{doing}: {e}")
}
