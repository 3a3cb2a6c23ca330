//! The process's memory allocator.
//!
//! Every candle operation allocates a fresh output buffer and frees its
//! inputs' buffers soon after, so a UNet step turns over gigabytes of
//! short-lived memory. glibc's allocator hands large buffers back to the
//! kernel on free and takes them again as zeroed pages, which cost about
//! 40% of a training step's CPU time in system time on a 2-core machine
//! (candle 0.11). mimalloc, with purging of freed pages switched off,
//! reuses them instead.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed pages in the process for reuse instead of returning them to
/// the kernel. The resident size then stays at its peak, which for the
/// engine is reached within the first step.
pub fn retain_freed_pages() {
    // SAFETY: mi_option_set only stores an option value, and mimalloc
    // allows options to change at any time, from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// Index of `mi_option_purge_delay` in the `mi_option_t` enum of the
/// mimalloc v3 header that libmimalloc-sys 0.1.49 compiles; the crate
/// exports no constant for it. -1 means never purge.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_option_is_set() {
        retain_freed_pages();
        // SAFETY: reading an option has no preconditions.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, -1);
    }
}
