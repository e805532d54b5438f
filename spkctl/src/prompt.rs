//! Questions at the terminal. Ctrl-C answers them too: the line is read without blocking the
//! event loop, while spkctl listens for SIGINT (once spkctl has a SIGINT handler, the terminal's
//! Ctrl-C no longer ends it, so a blocking read would simply wait on).

use std::io::{self, IsTerminal, Write};
use std::os::fd::OwnedFd;

use futures_util::StreamExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How a yes/no question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Yes,
    No,
    /// Ctrl-C instead of an answer.
    Interrupted,
}

/// Ask `question` (with its `[Y/n]` or `[y/N]`) on stderr and wait for a line or Ctrl-C. An
/// empty line or the end of input takes the default.
pub async fn yes_no(question: &str, default_yes: bool) -> Reply {
    // Listen before asking, so a Ctrl-C right after the question is seen.
    let mut interrupts = std::pin::pin!(interrupts());
    eprint!(
        "{question} {} ",
        if default_yes { "[Y/n]" } else { "[y/N]" }
    );
    let _ = io::stderr().flush();
    tokio::select! {
        line = read_line() => answer(line.ok().flatten().as_deref(), default_yes),
        Some(()) = interrupts.next() => Reply::Interrupted,
    }
}

/// What a line typed at a yes/no question means.
pub fn answer(line: Option<&str>, default_yes: bool) -> Reply {
    let a = line.unwrap_or("").trim();
    let yes = if a.is_empty() {
        default_yes
    } else {
        a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
    };
    if yes { Reply::Yes } else { Reply::No }
}

/// Ctrl-C presses, as a stream (none if the handler cannot be installed). From the first one
/// on, SIGINT no longer ends spkctl.
pub fn interrupts() -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        |sig| async move {
            let mut sig = sig?;
            sig.recv().await?;
            Some(((), Some(sig)))
        },
    )
}

/// One line from stdin (`None` at the end of input), without blocking the event loop; dropping
/// the future stops reading, and what was not read stays for the next question.
pub async fn read_line() -> io::Result<Option<String>> {
    match reopen_terminal() {
        Some(fd) => read_terminal_line(fd).await,
        None => read_line_on_a_thread().await,
    }
}

/// stdin's terminal opened again, non-blocking: a file description of spkctl's own, so the
/// shell's stdin (shared with spkctl's) stays blocking.
fn reopen_terminal() -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    if !io::stdin().is_terminal() {
        return None;
    }
    rustix::fs::open(
        "/proc/self/fd/0",
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// A terminal in canonical mode is readable once a whole line is typed.
async fn read_terminal_line(fd: OwnedFd) -> io::Result<Option<String>> {
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same until it is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut line = Vec::new();
    loop {
        let mut guard = fd.readable().await?;
        let mut buf = [0u8; 1024];
        let read =
            guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(io::Error::from));
        match read {
            Ok(Ok(0)) if line.is_empty() => return Ok(None),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                line.extend_from_slice(&buf[..n]);
                if line.ends_with(b"\n") {
                    break;
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            // Not readable after all: wait again.
            Err(_) => {}
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Not a terminal: a blocking read on a thread of its own, left behind if the answer is no
/// longer wanted (it does not keep spkctl from exiting).
async fn read_line_on_a_thread() -> io::Result<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = io::stdin()
            .read_line(&mut line)
            .map(|n| (n > 0).then_some(line));
        let _ = tx.send(read);
    });
    rx.await.unwrap_or(Ok(None))
}
