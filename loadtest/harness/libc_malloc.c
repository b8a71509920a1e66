/* Stands in for libjemalloc.so.2 under a FakeClock (loadtest/clock.py): jemalloc cannot start under libfaketime
 * (wolfcw/libfaketime#130), so a process that links it, as Debian's redis-server does, gets glibc's malloc, free,
 * realloc and malloc_usable_size instead, and these three jemalloc extras it also calls. Redis built with
 * MALLOC=libc does the same. */
typedef unsigned long size_t;

int mallctl(const char *name, void *old, size_t *old_length, void *new, size_t new_length) {
    return 2; /* ENOENT: no such statistic; Redis reports its allocator's figures as 0 */
}

size_t nallocx(size_t size, int flags) { return size; }

void malloc_stats_print(void (*write)(void *, const char *), void *opaque, const char *options) {}
