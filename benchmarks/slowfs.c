/* A shared filesystem's latency, without FUSE: an LD_PRELOAD library that makes every path
 * lookup under one tree wait, and counts those lookups.
 *
 *   SLOWFS_PREFIX=/some/tree   lookups of paths under this tree wait (nothing else does)
 *   SLOWFS_DELAY_US=1000       how long each waits, in microseconds (default 1000)
 *   SLOWFS_COUNT_FILE=/path    at exit, "PID COUNT\n" is appended to this file
 *
 * On NFS, Lustre or CVMFS every lookup that misses the client's cache is a round trip to a
 * server (a few ms for NFS, ~0.4 ms a stat for a Lustre client); a call made while another
 * thread waits proceeds at once, as a network filesystem's client keeps many requests in
 * flight. Lookups are what open, stat, access, opendir and readlink do with a path; calls on
 * a descriptor (fstat, read, readdir) are not lookups. Relative paths and paths relative to a
 * directory descriptor are resolved (through /proc/self/fd) before the prefix is compared.
 *
 * The count lives in a shared anonymous mapping made before main(): forked children (which
 * may leave through _exit, running no destructor) add to their parent's count, and only the
 * process that made the mapping reports it. A program started by exec makes its own. The
 * process can read it as it goes: slowfs_lookups() (ctypes.CDLL(None).slowfs_lookups).
 *
 * Built by benchmarks/latency.py with the system C compiler at run time; never committed
 * as a binary.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char prefix[PATH_MAX];
static size_t prefix_len;
static long delay_ns = 1000000;
static unsigned long *shared_count;
static unsigned long private_count;
static pid_t creator;

static ssize_t (*real_readlink)(const char *, char *, size_t);

__attribute__((constructor)) static void slowfs_init(void) {
    const char *p = getenv("SLOWFS_PREFIX");
    const char *d = getenv("SLOWFS_DELAY_US");
    real_readlink = dlsym(RTLD_NEXT, "readlink");
    if (p && *p && strlen(p) < sizeof prefix) {
        strcpy(prefix, p);
        prefix_len = strlen(prefix);
        while (prefix_len > 1 && prefix[prefix_len - 1] == '/')
            prefix[--prefix_len] = '\0';
    }
    if (d && *d)
        delay_ns = atol(d) * 1000L;
    void *map = mmap(NULL, sizeof *shared_count, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    shared_count = map == MAP_FAILED ? &private_count : map;
    creator = getpid();
}

__attribute__((destructor)) static void slowfs_report(void) {
    const char *out = getenv("SLOWFS_COUNT_FILE");
    if (!out || !*out || getpid() != creator)
        return;
    FILE *f = fopen(out, "a");
    if (!f)
        return;
    fprintf(f, "%d %lu\n", (int)getpid(), __atomic_load_n(shared_count, __ATOMIC_RELAXED));
    fclose(f);
}

unsigned long slowfs_lookups(void) {
    return __atomic_load_n(shared_count, __ATOMIC_RELAXED);
}

static int under_prefix(const char *path) {
    return strncmp(path, prefix, prefix_len) == 0 &&
           (path[prefix_len] == '/' || path[prefix_len] == '\0');
}

/* Whether dirfd + path names something under the prefix. */
static int is_slow(int dirfd, const char *path) {
    if (!prefix_len || !path)
        return 0;
    if (path[0] == '/')
        return under_prefix(path);
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base))
            return 0;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = real_readlink(link, base, sizeof base - 1);
        if (n < 0)
            return 0;
        base[n] = '\0';
    }
    return under_prefix(base);
}

static void lookup(int dirfd, const char *path) {
    if (!is_slow(dirfd, path))
        return;
    __atomic_add_fetch(shared_count, 1, __ATOMIC_RELAXED);
    struct timespec wait = {delay_ns / 1000000000L, delay_ns % 1000000000L};
    while (nanosleep(&wait, &wait) != 0) {
    }
}

#define REAL(name) \
    static __typeof__(name) *real; \
    if (!real) \
        real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* open and its variants take a mode only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, mode) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | __O_TMPFILE)) { \
        va_list ap; \
        va_start(ap, flags); \
        mode = va_arg(ap, mode_t); \
        va_end(ap); \
    }

int open(const char *path, int flags, ...) {
    REAL(open);
    MODE_ARG(flags, mode);
    lookup(AT_FDCWD, path);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    REAL(open64);
    MODE_ARG(flags, mode);
    lookup(AT_FDCWD, path);
    return real(path, flags, mode);
}

int __open_2(const char *path, int flags) {
    REAL(__open_2);
    lookup(AT_FDCWD, path);
    return real(path, flags);
}

int __open64_2(const char *path, int flags) {
    REAL(__open64_2);
    lookup(AT_FDCWD, path);
    return real(path, flags);
}

int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat);
    MODE_ARG(flags, mode);
    lookup(dirfd, path);
    return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64);
    MODE_ARG(flags, mode);
    lookup(dirfd, path);
    return real(dirfd, path, flags, mode);
}

FILE *fopen(const char *path, const char *how) {
    REAL(fopen);
    lookup(AT_FDCWD, path);
    return real(path, how);
}

FILE *fopen64(const char *path, const char *how) {
    REAL(fopen64);
    lookup(AT_FDCWD, path);
    return real(path, how);
}

int stat(const char *path, struct stat *buf) {
    REAL(stat);
    lookup(AT_FDCWD, path);
    return real(path, buf);
}

int stat64(const char *path, struct stat64 *buf) {
    REAL(stat64);
    lookup(AT_FDCWD, path);
    return real(path, buf);
}

int lstat(const char *path, struct stat *buf) {
    REAL(lstat);
    lookup(AT_FDCWD, path);
    return real(path, buf);
}

int lstat64(const char *path, struct stat64 *buf) {
    REAL(lstat64);
    lookup(AT_FDCWD, path);
    return real(path, buf);
}

int fstatat(int dirfd, const char *path, struct stat *buf, int flags) {
    REAL(fstatat);
    /* fstat(fd) may arrive as fstatat(fd, "", AT_EMPTY_PATH): a descriptor, no lookup. */
    if (!((flags & AT_EMPTY_PATH) && path[0] == '\0'))
        lookup(dirfd, path);
    return real(dirfd, path, buf, flags);
}

int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags) {
    REAL(fstatat64);
    if (!((flags & AT_EMPTY_PATH) && path[0] == '\0'))
        lookup(dirfd, path);
    return real(dirfd, path, buf, flags);
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    REAL(statx);
    if (!((flags & AT_EMPTY_PATH) && path[0] == '\0'))
        lookup(dirfd, path);
    return real(dirfd, path, flags, mask, buf);
}

int access(const char *path, int how) {
    REAL(access);
    lookup(AT_FDCWD, path);
    return real(path, how);
}

int faccessat(int dirfd, const char *path, int how, int flags) {
    REAL(faccessat);
    lookup(dirfd, path);
    return real(dirfd, path, how, flags);
}

DIR *opendir(const char *path) {
    REAL(opendir);
    lookup(AT_FDCWD, path);
    return real(path);
}

ssize_t readlink(const char *path, char *buf, size_t size) {
    REAL(readlink);
    lookup(AT_FDCWD, path);
    return real(path, buf, size);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size) {
    REAL(readlinkat);
    lookup(dirfd, path);
    return real(dirfd, path, buf, size);
}

char *realpath(const char *path, char *resolved) {
    REAL(realpath);
    lookup(AT_FDCWD, path);
    return real(path, resolved);
}
