//! `sup fg NAME`: attach to one running instance, as supervisorctl's `fg`. Its stdout and
//! stderr are followed (each a `tail -f` on its own connection and thread, printed to our
//! stdout and stderr), and a `subscribe` on the main thread watches its state: once it is
//! down (stopped, exited, fatal) we leave. Ctrl-C stops the job (`sup stop --no-wait`, so the
//! daemon sends its `stopsignal` to the group and SIGKILL after `stoptime`), and we leave once
//! it is down; a second Ctrl-C detaches at once, leaving the job as it is.
//!
//! A job's stdin is `/dev/null`: nothing typed is forwarded to it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{connect, unexpected};
use crate::cli::Global;
use crate::control::client::{cause, Conn};
use crate::control::proto::{Request, RequestBody, ResponseBody};
use crate::fail::{Fail, Outcome};

/// After the job is down, output still on its way is awaited until the streams have been
/// quiet this long (the daemon sends a job's last bytes before its exit, but on another
/// connection), and never longer than `DRAIN_MAX`.
const QUIET: Duration = Duration::from_millis(150);
const DRAIN_MAX: Duration = Duration::from_secs(2);

const DOWN: &[&str] = &["stopped", "exited", "fatal"];

pub fn run(global: &Global, name: String) -> Result<Outcome, Fail> {
    let mut watch = connect(global)?;
    watch.send(&Request::new(RequestBody::Subscribe {
        names: vec![name.clone()],
    }))?;
    watch.set_timeout(Some(watch.quick()))?;
    let first = watch
        .next()?
        .ok_or_else(|| Fail::new("the daemon closed the connection"))?;
    let ResponseBody::Status { instances, .. } = first.body else {
        return Err(unexpected("subscribe", &first.body));
    };
    let [inst] = &instances[..] else {
        let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
        return Err(Fail::new(format!(
            "{name} has {} instances: {}",
            names.len(),
            names.join(", ")
        ))
        .hint(format!(
            "attach to one of them, e.g. `sup fg {}`",
            names.first().unwrap_or(&"NAME:0")
        )));
    };
    let instance = inst.name.clone();
    if DOWN.contains(&inst.state.as_str()) || inst.state == "scheduled" {
        return Err(
            Fail::new(format!("{instance} is not running ({})", inst.state))
                .hint(format!("start it with `sup start {instance}`")),
        );
    }
    watch.set_timeout(None)?;

    let last_data = Arc::new(Mutex::new(Instant::now()));
    for stderr in [false, true] {
        let mut conn = connect(global)?;
        conn.send(&Request::new(RequestBody::Tail {
            name: instance.clone(),
            lines: 0,
            stderr,
            follow: true,
        }))?;
        // The first answer (the empty tail) means the daemon counts us as a follower: from
        // here on nothing the job writes is missed.
        match conn.next()? {
            Some(resp) => match resp.body {
                ResponseBody::Output { .. } => {}
                other => return Err(unexpected("tail", &other)),
            },
            None => return Err(Fail::new("the daemon closed the connection")),
        }
        conn.set_timeout(None)?;
        let last = last_data.clone();
        std::thread::spawn(move || forward(conn, stderr, &last));
    }
    interrupts(global, &watch, &instance)?;
    eprintln!("sup: attached to {instance}; Ctrl-C stops it (input is not forwarded)");

    let mut state = inst.state.clone();
    while let Some(resp) = watch.next()? {
        if let ResponseBody::Event { instance: i, .. } = resp.body {
            if i.name == instance {
                state = i.state;
                if DOWN.contains(&state.as_str()) {
                    break;
                }
            }
        }
    }
    // Let what the job wrote last arrive.
    let ended = Instant::now();
    loop {
        let quiet = last_data
            .lock()
            .map(|t| t.elapsed() >= QUIET)
            .unwrap_or(true);
        if (quiet && ended.elapsed() >= QUIET) || ended.elapsed() >= DRAIN_MAX {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::io::stdout().flush();
    if DOWN.contains(&state.as_str()) {
        eprintln!("sup: {instance} is {state}");
    } else {
        eprintln!("sup: detached from {instance}");
    }
    Ok(Outcome::Ok)
}

/// One stream's chunks to our stdout or stderr, as they come, until the connection ends.
fn forward(mut conn: Conn, stderr: bool, last: &Mutex<Instant>) {
    while let Ok(Some(resp)) = conn.next() {
        if let ResponseBody::Output { data } = resp.body {
            let written = if stderr {
                let mut e = std::io::stderr().lock();
                e.write_all(data.as_bytes()).and_then(|()| e.flush())
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(data.as_bytes()).and_then(|()| o.flush())
            };
            if written.is_err() {
                return;
            }
            if let Ok(mut t) = last.lock() {
                *t = Instant::now();
            }
        }
    }
}

/// SIGINT (and SIGTERM): the first stops the job, the next detaches (closes the watch, so
/// the main loop ends).
fn interrupts(global: &Global, watch: &Conn, instance: &str) -> Result<(), Fail> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let closer = watch.closer()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Fail::new(format!("cannot watch for Ctrl-C: {}", cause(&e))))?;
    let global = global.clone();
    let instance = instance.to_string();
    let stopping = AtomicBool::new(false);
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if stopping.swap(true, Ordering::SeqCst) {
                closer.close();
                return;
            }
            eprintln!("sup: stopping {instance} (Ctrl-C again to detach and leave it)");
            let stopped = connect(&global).and_then(|mut c| {
                let q = c.quick();
                c.request(
                    &Request::new(RequestBody::Stop {
                        names: vec![instance.clone()],
                        wait: false,
                    }),
                    Some(q),
                )
            });
            if let Err(e) = stopped {
                eprintln!("sup: error: {}", e.message);
                closer.close();
                return;
            }
        }
    });
    Ok(())
}
