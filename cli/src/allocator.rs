//! glibc malloc settings for the long-running server.
//!
//! By default glibc gives threads that allocate under contention arenas of their own, up to eight
//! per core, and raises its mmap threshold after every large free, so large buffers (upload
//! batches, object reads) end up in those arenas' heaps, and each arena keeps what was freed in
//! it: a 196 MiB push left the server 60+ MiB resident, most of it free memory. Two arenas and a
//! fixed 256 KiB mmap threshold (large buffers are mapped and unmapped, never kept) hold the
//! server's peak during that push near 30 MiB with no measurable cost in time (`cargo bench -p
//! flatbucket-cli --bench push`). A different global allocator was no answer: mimalloc kept
//! 180 MiB resident in the same push.
//!
//! The only `unsafe` in the workspace: `mallopt` has no safe wrapper. It is called once, first
//! thing in `main`, before any other thread exists, with valid options.

/// Arenas: one per core on the 2-core machines this is sized for.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;
/// Allocations from this size up are mapped on their own and returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Applies the settings, except those the operator set through glibc's own environment variables
/// (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`), which glibc has already applied.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, option, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENA_MAX),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: see the module documentation.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(option, value)
            };
        }
    }
}
