//! How spkd uses glibc's allocator: a long-running daemon should hold, between transactions,
//! about what it holds at start, not its transaction-time peak. Measured after an upgrade of the
//! benchmark's repository: 44–64 MiB resident without these two calls, ~18 MiB with them.

/// Allocations at least this large get their own mapping, returned to the system when freed.
/// glibc raises this threshold as large blocks are freed (up to 32 MiB), after which an xz
/// decoder's dictionary and the staging buffers stay in the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Set the allocator up; call first thing in `main`, before any other thread runs.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Give back what a finished transaction freed: glibc otherwise keeps the free memory of its
/// per-thread arenas.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}
