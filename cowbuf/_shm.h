/* Shared memory for cowbuf regions: create, map, protect, unmap.
 *
 * A region must be shared with forked children, transferable to unrelated processes
 * by fd, and never leave a name behind that could leak:
 *   Linux: memfd_create, sealed against shrink and grow so that no process can
 *          truncate it under a reader (which would SIGBUS every reader);
 *   other POSIX (macOS): shm_open of a random name, unlinked before returning;
 *   elsewhere: MAP_SHARED | MAP_ANONYMOUS, shared with forked children only.
 *
 * Every function here is plain C: it returns -1 (or NULL) with errno set and never
 * touches Python state, so the callers can run it without the GIL.
 */
#ifndef COWBUF_SHM_H
#define COWBUF_SHM_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

/* Linux ABI values, for build images whose headers are older than the kernel. */
#if defined(__linux__)
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS (1024 + 9)
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#endif
#ifndef F_SEAL_SHRINK
#define F_SEAL_SHRINK 0x0002
#endif
#ifndef F_SEAL_GROW
#define F_SEAL_GROW 0x0004
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#endif

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

/* AddressSanitizer builds (tools/sanitize.sh) mark the bytes of a mapping that no
 * Region covers (an arena's free space, the tail of the last page) as poisoned, so
 * that an access past the end of a Region is reported, as for heap memory. Every
 * mapping is unpoisoned before it is unmapped: the addresses are reused. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define cowbuf_poison(addr, size) ASAN_POISON_MEMORY_REGION((addr), (size))
#define cowbuf_unpoison(addr, size) ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#else
#define cowbuf_poison(addr, size) ((void)(addr), (void)(size))
#define cowbuf_unpoison(addr, size) ((void)(addr), (void)(size))
#endif

/* The fd kinds cowbuf_shm_create can return. */
#define COWBUF_FD_NONE (-2) /* no fd-backed shared memory here: map anonymously */

static size_t
cowbuf_page_size(void)
{
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? (size_t)size : 4096;
}

#if !defined(__linux__)
/* A name no other process will pick: pid, a counter and random bits. macOS limits
 * shm names to 31 characters. */
static int
cowbuf_shm_open_unlinked(void)
{
    static unsigned int counter = 0;
    char name[32];
    for (int attempt = 0; attempt < 16; attempt++) {
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
        uint32_t noise = arc4random();
#else
        uint32_t noise = (uint32_t)rand() ^ ((uint32_t)counter << 16);
#endif
        snprintf(name, sizeof(name), "/cowbuf.%x.%x.%x", (unsigned int)getpid(),
                 counter++, noise);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            shm_unlink(name);
            int flags = fcntl(fd, F_GETFD);
            if (flags != -1) {
                (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
            return fd;
        }
        if (errno != EEXIST) {
            return -1;
        }
    }
    errno = EEXIST;
    return -1;
}
#endif

/* Allocate the backing store: committed up front with `populate`, so that running out
 * of memory is reported here (ENOMEM/ENOSPC) rather than by a SIGBUS on first touch. */
static int
cowbuf_commit(int fd, size_t size)
{
#if defined(__linux__)
    int rc;
    do {
        rc = fallocate(fd, 0, 0, (off_t)size);
    } while (rc == -1 && errno == EINTR);
    return rc;
#else
    (void)fd;
    (void)size;
    return 0; /* macOS commits shm pages on touch; cowbuf_shm_map touches them */
#endif
}

/* A new fd for `size` zero bytes of shared memory; -1 with errno on failure;
 * COWBUF_FD_NONE where the platform only has anonymous shared mappings. */
static int
cowbuf_shm_create(size_t size, int populate)
{
    int fd;
    if ((size_t)(off_t)size != size || (off_t)size < 0) {
        errno = ENOMEM;
        return -1;
    }
#if defined(__linux__)
#if defined(SYS_memfd_create)
    fd = (int)syscall(SYS_memfd_create, "cowbuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
#else
    fd = -1;
    errno = ENOSYS;
#endif
    if (fd < 0) {
        return (errno == ENOSYS || errno == EINVAL) ? COWBUF_FD_NONE : -1;
    }
#else
    fd = cowbuf_shm_open_unlinked();
    if (fd < 0) {
        return (errno == ENOSYS) ? COWBUF_FD_NONE : -1;
    }
#endif
    if (ftruncate(fd, (off_t)size) == -1 || (populate && cowbuf_commit(fd, size) == -1)) {
        int saved = errno;
        close(fd);
        errno = (saved == EFBIG || saved == EINVAL || saved == ENOSPC) ? ENOMEM : saved;
        return -1;
    }
#if defined(__linux__)
    /* Nobody, in this process or any other that gets the fd, may change the size. */
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
#endif
    return fd;
}

/* Map `size` bytes of `fd` (or anonymous shared memory for fd < 0). NULL with errno. */
static void *
cowbuf_shm_map(int fd, size_t size, int writable, int populate)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    int flags = MAP_SHARED;
    if (fd < 0) {
        flags |= MAP_ANONYMOUS;
    }
#if defined(MAP_POPULATE)
    if (populate) {
        flags |= MAP_POPULATE;
    }
#endif
    void *addr = mmap(NULL, size, prot, flags, fd, 0);
    if (addr == MAP_FAILED) {
        if (errno == EINVAL || errno == EOVERFLOW) {
            errno = ENOMEM;
        }
        return NULL;
    }
#if !defined(MAP_POPULATE)
    if (populate && writable) {
        size_t page = cowbuf_page_size();
        for (size_t at = 0; at < size; at += page) {
            ((volatile char *)addr)[at] = 0;
        }
    }
#endif
    return addr;
}

/* Seal a memfd against writes from now on, on Linux >= 5.1: no process can map it
 * writable or write(2) to it; mappings that exist already keep working. Older kernels
 * (EINVAL) and other systems have no such seal: a no-op. */
static void
cowbuf_shm_seal_writes(int fd)
{
#if defined(__linux__)
    if (fd >= 0) {
        (void)fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE);
    }
#else
    (void)fd;
#endif
}

/* Make a mapping read-only for good: mprotect here, and seal the memfd so that no
 * process can map it writable from now on. Without the seal (older kernels) the
 * mprotect alone still holds in this process and its future forks. */
static int
cowbuf_shm_protect_readonly(void *addr, size_t size, int fd)
{
    if (mprotect(addr, size, PROT_READ) == -1) {
        return -1;
    }
    cowbuf_shm_seal_writes(fd);
    return 0;
}

/* The size and inode of the object behind `fd`; -1 with errno. */
static int
cowbuf_fd_stat(int fd, int64_t *size, uint64_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) == -1) {
        return -1;
    }
    *size = (int64_t)st.st_size;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

/* Whether other processes of the same user may open this process's fds through
 * /proc/<pid>/fd: Linux refuses them when the process is not dumpable (after it changed
 * its credentials, e.g. a gunicorn worker started as root with --user, or after
 * prctl(PR_SET_DUMPABLE, 0)); root may still. 0 off Linux. */
static int
cowbuf_fds_reachable(void)
{
#if defined(__linux__)
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1;
#else
    return 0;
#endif
}

#endif /* COWBUF_SHM_H */
