/* Who holds a lock, in a form that outlives the holder: a process identity is its pid
 * and a 32-bit tag of its start time, packed into one 64-bit word ((tag << 32) | pid),
 * so that a waiter can tell a holder that died from one that runs, and a pid that the
 * system reused for a new process from the holder that had it.
 *
 *   Linux: the tag is the start time in clock ticks since boot (/proc/PID/stat, field
 *          22); a process is gone when kill(pid, 0) finds no process, or when
 *          /proc/PID/stat shows a zombie (Z, X) or another start time.
 *   macOS: the tag mixes the start time that proc_pidinfo reports; a zombie is SZOMB.
 *   elsewhere: the tag is 0 and only kill(pid, 0) tells: a zombie holder (killed, not
 *          yet reaped by its parent) counts as alive, and a reused pid is not noticed.
 *
 * The identity of this process is cached, and forgotten in a forked child (which has
 * another pid) by a pthread_atfork handler, so that no fork() path can keep it stale.
 * Pids are below 2**30 on every supported system (Linux caps them at 2**22): the top
 * bits of the low half are free for the callers' flags.
 *
 * Plain C: no Python state, callable without the GIL.
 */
#ifndef COWBUF_PROCESS_H
#define COWBUF_PROCESS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <libproc.h>
#include <sys/proc_info.h>
#endif

#define COWBUF_PID_MASK 0x3fffffffu

static uint64_t cowbuf_self = 0; /* this process's identity; 0 until computed */
static pthread_once_t cowbuf_atfork_once = PTHREAD_ONCE_INIT;

#if defined(__linux__)
/* State (field 3) and start time (field 22) of /proc/PID/stat: 0, or -1 with errno
 * set when the file cannot be read (ENOENT: no such process, or /proc is not
 * mounted). */
static inline int cowbuf_proc_stat(uint32_t pid, char *state, uint64_t *start)
{
    char path[48], buf[1024];
    char *p;
    ssize_t n;
    int fd, field;
    if (pid == 0)
        memcpy(path, "/proc/self/stat", sizeof("/proc/self/stat"));
    else {
        /* no snprintf: this runs in forked children (async-signal-safe calls only) */
        char digits[16];
        int len = 0;
        uint32_t v = pid;
        do {
            digits[len++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        memcpy(path, "/proc/", 6);
        for (int i = 0; i < len; i++)
            path[6 + i] = digits[len - 1 - i];
        memcpy(path + 6 + len, "/stat", 6);
    }
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd == -1 && errno == EINTR);
    if (fd == -1)
        return -1;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n == -1 && errno == EINTR);
    close(fd);
    if (n <= 0) {
        errno = ENOENT;
        return -1;
    }
    buf[n] = '\0';
    /* the command name (field 2) is in parentheses and may hold spaces and ')' */
    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ') {
        errno = EINVAL;
        return -1;
    }
    p += 2;
    *state = *p;
    for (field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL) {
            errno = EINVAL;
            return -1;
        }
        p++;
    }
    *start = 0;
    while (*p >= '0' && *p <= '9')
        *start = *start * 10 + (uint64_t)(*p++ - '0');
    return 0;
}
#endif

#if defined(__APPLE__)
static inline int cowbuf_proc_bsdinfo(uint32_t pid, struct proc_bsdinfo *info)
{
    int n = proc_pidinfo((int)pid, PROC_PIDTBSDINFO, 0, info, (int)sizeof(*info));
    if (n != (int)sizeof(*info)) {
        if (errno == 0)
            errno = ESRCH;
        return -1;
    }
    return 0;
}

static inline uint32_t cowbuf_start_tag(const struct proc_bsdinfo *info)
{
    uint64_t usec = (uint64_t)info->pbi_start_tvsec * 1000000u + info->pbi_start_tvusec;
    return (uint32_t)(usec ^ (usec >> 32));
}
#endif

static void cowbuf_forget_self(void)
{
    __atomic_store_n(&cowbuf_self, 0, __ATOMIC_RELAXED);
}

static void cowbuf_register_atfork(void)
{
    pthread_atfork(NULL, NULL, cowbuf_forget_self);
}

static inline uint64_t cowbuf_compute_identity(void)
{
    uint32_t pid = (uint32_t)getpid() & COWBUF_PID_MASK;
    uint32_t tag = 0;
    pthread_once(&cowbuf_atfork_once, cowbuf_register_atfork);
#if defined(__linux__)
    char state;
    uint64_t start;
    if (cowbuf_proc_stat(0, &state, &start) == 0)
        tag = (uint32_t)start;
#elif defined(__APPLE__)
    struct proc_bsdinfo info;
    if (cowbuf_proc_bsdinfo(pid, &info) == 0)
        tag = cowbuf_start_tag(&info);
#endif
    uint64_t me = ((uint64_t)tag << 32) | pid;
    __atomic_store_n(&cowbuf_self, me, __ATOMIC_RELAXED);
    return me;
}

/* This process's identity: (start tag << 32) | pid, never 0. */
static inline uint64_t cowbuf_identity(void)
{
    uint64_t me = __atomic_load_n(&cowbuf_self, __ATOMIC_RELAXED);
    return me ? me : cowbuf_compute_identity();
}

/* 1 if the process of this identity is gone (exited, a zombie, or its pid now names
 * another process), 0 if it runs or that cannot be told. */
static inline int cowbuf_process_gone(uint64_t identity)
{
    uint32_t pid = (uint32_t)identity & COWBUF_PID_MASK;
    uint32_t tag = (uint32_t)(identity >> 32);
    if (pid == 0)
        return 0;
    if (kill((pid_t)pid, 0) == -1 && errno == ESRCH)
        return 1;
    if (tag == 0)
        return 0; /* the holder could not read its own start time: nothing to compare */
#if defined(__linux__)
    char state;
    uint64_t start;
    /* kill() found a process: a failure to read its stat is a race with its exit (the
     * next check sees ESRCH) or a /proc that hides it (hidepid): alive either way. */
    if (cowbuf_proc_stat(pid, &state, &start) == -1)
        return 0;
    return state == 'Z' || state == 'X' || state == 'x' || (uint32_t)start != tag;
#elif defined(__APPLE__)
    struct proc_bsdinfo info;
    if (cowbuf_proc_bsdinfo(pid, &info) == -1)
        return 0;
    return info.pbi_status == SZOMB || cowbuf_start_tag(&info) != tag;
#else
    return 0;
#endif
}

#endif /* COWBUF_PROCESS_H */
