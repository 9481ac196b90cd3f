/* Heap accounting for the benchmarks that report memory (bench_dtls, device_heap.c): Debian's
 * Mbed TLS has no MBEDTLS_MEMORY_BUFFER_ALLOC_C / MBEDTLS_PLATFORM_MEMORY, so the program that
 * includes this header (once, in one .c file) interposes malloc/calloc/realloc/free, forwarding
 * to glibc's __libc_*, and counts live bytes (malloc_usable_size) and their peak. Under ASan the
 * counting is off (ASan owns malloc): COUNTING is 0 and the figures stay 0. */
#ifndef FK_BENCH_HEAP_COUNT_H
#define FK_BENCH_HEAP_COUNT_H

#include <malloc.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define COUNTING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNTING 0
#endif
#endif
#ifndef COUNTING
#define COUNTING 1
#endif

static long long heap_now, heap_peak;

#if COUNTING
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);
void free(void *p);

static void count(long long d) {
    long long now = __atomic_add_fetch(&heap_now, d, __ATOMIC_RELAXED);
    long long peak = __atomic_load_n(&heap_peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&heap_peak, &peak, now, 0, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED)) {
    }
}

void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    if (p != NULL) {
        count((long long)malloc_usable_size(p));
    }
    return p;
}

void *calloc(size_t n, size_t m) {
    void *p = __libc_calloc(n, m);
    if (p != NULL) {
        count((long long)malloc_usable_size(p));
    }
    return p;
}

void *realloc(void *p, size_t n) {
    long long old = p != NULL ? (long long)malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, n);
    if (q != NULL) {
        count((long long)malloc_usable_size(q) - old);
    } else if (n == 0) {
        count(-old);
    }
    return q;
}

void free(void *p) {
    if (p != NULL) {
        count(-(long long)malloc_usable_size(p));
    }
    __libc_free(p);
}
#endif

static long long heap_get(void) {
    return __atomic_load_n(&heap_now, __ATOMIC_RELAXED);
}

static void peak_reset(void) {
    __atomic_store_n(&heap_peak, heap_get(), __ATOMIC_RELAXED);
}

#endif
