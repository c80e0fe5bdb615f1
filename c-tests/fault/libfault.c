/*
 * libfault: makes one call of the shim's fail, for fault injection
 * (LD_PRELOAD="libfault.so libsslasync.so" in front of the shim).
 *
 *   FAULT_FN=<name> FAULT_NTH=<k>   the k-th call of <name> made from
 *                                   libsslasync fails (k from 1)
 *   FAULT_REPORT=<file>             at exit, "<name> <calls>" lines: how
 *                                   many calls of each the shim made
 *
 * Interposed: the calls the shim can see fail. pthread_create, epoll_create1,
 * epoll_ctl, fcntl (F_DUPFD_CLOEXEC: EMFILE, as at the fd limit), dlvsym,
 * dlopen, malloc, calloc, realloc, posix_memalign, and OpenSSL's
 * CRYPTO_get_ex_new_index and SSL_set_ex_data. Only calls whose return
 * address lies in libsslasync's code count or fail; everything else goes
 * straight to the real function.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The allocator's entries last (see fault()). */
enum { F_PTHREAD_CREATE, F_EPOLL_CREATE1, F_EPOLL_CTL, F_FCNTL_DUP, F_DLVSYM, F_DLOPEN,
       F_EX_INDEX, F_SET_EX_DATA, F_MALLOC, F_CALLOC, F_REALLOC, F_POSIX_MEMALIGN, F_COUNT };
static const char *const names[F_COUNT] = {
    "pthread_create", "epoll_create1", "epoll_ctl", "fcntl_dup", "dlvsym", "dlopen",
    "CRYPTO_get_ex_new_index", "SSL_set_ex_data", "malloc", "calloc", "realloc",
    "posix_memalign",
};
static atomic_long calls[F_COUNT];
static int fail_fn = -1;
static long fail_nth;

/* The shim's code range, found once it is loaded. */
static atomic_uintptr_t shim_lo, shim_hi;

static int find_shim(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, "libsslasync") == NULL)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            atomic_store(&shim_lo, info->dlpi_addr + ph->p_vaddr);
            atomic_store(&shim_hi, info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
            return 1;
        }
    }
    return 0;
}

/* Only compares: malloc is called from inside the loader too. The range is
 * found by the constructor, when every preloaded object is mapped. */
static int from_shim(const void *ret)
{
    uintptr_t a = (uintptr_t)ret;

    return a >= atomic_load(&shim_lo) && a < atomic_load(&shim_hi);
}

/* Counts a call from the shim; 1 when this one is to fail. The shim's
 * constructor may run before this library's: outside the allocator (which
 * the loader calls while it holds its locks) the range is looked up then. */
static int fault(int fn, const void *ret)
{
    long n;

    if (atomic_load(&shim_hi) == 0 && fn < F_MALLOC)
        dl_iterate_phdr(find_shim, NULL);
    if (!from_shim(ret))
        return 0;
    n = atomic_fetch_add(&calls[fn], 1) + 1;
    return fn == fail_fn && n == fail_nth;
}

static void report(void)
{
    const char *path = getenv("FAULT_REPORT");
    FILE *f;

    if (path == NULL || (f = fopen(path, "w")) == NULL)
        return;
    for (int i = 0; i < F_COUNT; i++)
        fprintf(f, "%s %ld\n", names[i], atomic_load(&calls[i]));
    fclose(f);
}

__attribute__((constructor)) static void init(void)
{
    const char *fn = getenv("FAULT_FN"), *nth = getenv("FAULT_NTH");

    for (int i = 0; fn != NULL && i < F_COUNT; i++)
        if (strcmp(fn, names[i]) == 0)
            fail_fn = i;
    fail_nth = nth != NULL ? atol(nth) : 0;
    dl_iterate_phdr(find_shim, NULL);
    atexit(report);
}

#define REAL(type, name, ...)                                                   \
    static type (*real_##name)(__VA_ARGS__);                                    \
    if (real_##name == NULL)                                                    \
        *(void **)&real_##name = dlsym(RTLD_NEXT, #name)

int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg)
{
    REAL(int, pthread_create, pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (fault(F_PTHREAD_CREATE, __builtin_return_address(0)))
        return EAGAIN;
    return real_pthread_create(t, a, f, arg);
}

int epoll_create1(int flags)
{
    REAL(int, epoll_create1, int);
    if (fault(F_EPOLL_CREATE1, __builtin_return_address(0))) {
        errno = EMFILE;
        return -1;
    }
    return real_epoll_create1(flags);
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
    REAL(int, epoll_ctl, int, int, int, struct epoll_event *);
    if (op == EPOLL_CTL_ADD && fault(F_EPOLL_CTL, __builtin_return_address(0))) {
        errno = ENOMEM;
        return -1;
    }
    return real_epoll_ctl(ep, op, fd, ev);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    long arg;

    REAL(int, fcntl, int, int, ...);
    va_start(ap, cmd);
    arg = va_arg(ap, long);
    va_end(ap);
    if (cmd == F_DUPFD_CLOEXEC && fault(F_FCNTL_DUP, __builtin_return_address(0))) {
        errno = EMFILE;
        return -1;
    }
    return real_fcntl(fd, cmd, arg);
}

/* dlvsym and dlopen look at their caller (RTLD_NEXT, the namespace): the
 * forwarding calls are tail calls (this file is built with -O2, see
 * CMakeLists.txt), so the real ones see the shim as their caller. */
void *dlvsym(void *h, const char *name, const char *version)
{
    REAL(void *, dlvsym, void *, const char *, const char *);
    if (fault(F_DLVSYM, __builtin_return_address(0)))
        return NULL;
    return real_dlvsym(h, name, version);
}

void *dlopen(const char *file, int mode)
{
    REAL(void *, dlopen, const char *, int);
    if (fault(F_DLOPEN, __builtin_return_address(0)))
        return NULL;
    return real_dlopen(file, mode);
}

/* The allocator: glibc's own entry points, which never recurse into dlsym. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t n)
{
    if (fault(F_MALLOC, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    if (fault(F_CALLOC, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    if (fault(F_REALLOC, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;

    if (fault(F_POSIX_MEMALIGN, __builtin_return_address(0)))
        return ENOMEM;
    if ((p = __libc_memalign(align, n)) == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

int CRYPTO_get_ex_new_index(int cls, long argl, void *argp, void *nf, void *df, void *ff)
{
    REAL(int, CRYPTO_get_ex_new_index, int, long, void *, void *, void *, void *);
    if (fault(F_EX_INDEX, __builtin_return_address(0)))
        return -1;
    return real_CRYPTO_get_ex_new_index(cls, argl, argp, nf, df, ff);
}

int SSL_set_ex_data(void *ssl, int idx, void *data)
{
    REAL(int, SSL_set_ex_data, void *, int, void *);
    if (fault(F_SET_EX_DATA, __builtin_return_address(0)))
        return 0;
    return real_SSL_set_ex_data(ssl, idx, data);
}
