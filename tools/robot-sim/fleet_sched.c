/* robot-sim --fleet's scheduler: see fleet_sched.h. */
#include "fleet_sched.h"

#include "robot_sim.h"

#include "fkd/net.h"
#include "fkd_posix.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FLEET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLEET_ASAN 1
#endif
#endif
#ifdef FLEET_ASAN
/* AddressSanitizer must be told when the stack changes under it, or it reports the task's
 * frames as overflows of the worker's stack. */
#include <sanitizer/common_interface_defs.h>
#endif

/* A worker looks at its timers (a pass over all its tasks) at most every FLEET_TICK_MS: the
 * robots' waits are slices of 200 ms and timeouts of seconds, so 10 ms late costs nothing, and
 * a scan per millisecond boundary was 8 % of the simulator's CPU at 3,000 robots. Socket
 * events wake their task at once, without a scan. */
#define FLEET_TICK_MS 10
#define FLEET_EVENTS 256
#define FLEET_GUARD 4096u /* a PROT_NONE page under each stack: an overflow faults */

enum task_state { T_READY, T_WAIT, T_SLOT, T_DONE, T_REAPED };

struct fleet_task {
    ucontext_t ctx;
    struct fleet_worker *w;
    fleet_task_fn *fn;
    void *arg;
    const void *self; /* robot_sim_self while it runs */
    uint8_t *map;     /* the stack with its guard page */
    size_t map_len;
    enum task_state state;
    int joinable; /* freed by the worker after fleet_sched_join, not when it ends */
    int fd;       /* the socket it waits on, or -1 */
    uint64_t deadline;
    int result; /* what the wait returns: 1 ready, 0 timed out */
    int has_slot;
    /* In one of its worker's queues: ready (queued set) or waiting for a slot (T_SLOT); never
     * both, since a task waiting for a slot is not ready. */
    struct fleet_task *q_next;
    int queued;
#ifdef FLEET_ASAN
    void *fake; /* ASan's fake stack of this task while it is switched out */
#endif
};

struct task_queue {
    struct fleet_task *head, *tail;
};

struct fleet_worker {
    struct fleet_sched *s;
    pthread_t thread;
    int started;
    int ep;
    ucontext_t main_ctx;
    struct fleet_task **t;
    size_t n, cap;
    unsigned long long switches, waits, queued;
    unsigned slots_free;
    struct task_queue slots_wait; /* waiting for a slot, oldest first */
    struct task_queue ready;      /* ready to run, oldest first */
    uint64_t next_scan;           /* when scan() looks at the timers again */
#ifdef FLEET_ASAN
    const void *main_bottom; /* the worker thread's own stack, learnt at the first switch */
    size_t main_size;
    void *main_fake;
#endif
};

struct fleet_sched {
    struct fleet_worker *w;
    unsigned nw;
};

static _Thread_local struct fleet_task *cur_task;

static void queue_push(struct task_queue *q, struct fleet_task *t) {
    t->q_next = NULL;
    if (q->tail != NULL) {
        q->tail->q_next = t;
    } else {
        q->head = t;
    }
    q->tail = t;
}

static struct fleet_task *queue_pop(struct task_queue *q) {
    struct fleet_task *t = q->head;
    if (t != NULL) {
        q->head = t->q_next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        t->q_next = NULL;
    }
    return t;
}

static void make_ready(struct fleet_worker *w, struct fleet_task *t) {
    t->state = T_READY;
    if (!t->queued) {
        t->queued = 1;
        queue_push(&w->ready, t);
    }
}

static int add_task(struct fleet_worker *w, struct fleet_task *t) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct fleet_task **nt = realloc(w->t, cap * sizeof *nt);
        if (nt == NULL) {
            return -1;
        }
        w->t = nt;
        w->cap = cap;
    }
    w->t[w->n++] = t;
    return 0;
}

static void task_free(struct fleet_task *t) {
    if (t->map != NULL) {
        munmap(t->map, t->map_len);
    }
    free(t);
}

/* Switches from the running task back to its worker's loop. */
static void to_worker(struct fleet_task *t) {
    struct fleet_worker *w = t->w;
#ifdef FLEET_ASAN
    __sanitizer_start_switch_fiber(t->state == T_DONE ? NULL : &t->fake, w->main_bottom,
                                   w->main_size);
#endif
    swapcontext(&t->ctx, &w->main_ctx);
#ifdef FLEET_ASAN
    __sanitizer_finish_switch_fiber(t->fake, NULL, NULL);
#endif
}

static void task_entry(void) {
    struct fleet_task *t = cur_task;
#ifdef FLEET_ASAN
    __sanitizer_finish_switch_fiber(NULL, &t->w->main_bottom, &t->w->main_size);
#endif
    t->fn(t->arg);
    fleet_sched_slot_give();
    t->state = T_DONE;
    to_worker(t); /* never returns: a done task is not resumed */
}

/* getcontext returns twice in principle (not here: the context is only ever entered through
 * makecontext); kept out of task_new so its locals cannot be clobbered. */
static __attribute__((noinline)) int context_get(ucontext_t *c) {
    return getcontext(c);
}

static struct fleet_task *task_new(struct fleet_worker *w, size_t stack, fleet_task_fn *fn,
                                   void *arg, const void *self) {
    struct fleet_task *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096u;
    stack = (stack + pg - 1) / pg * pg;
    t->map_len = stack + FLEET_GUARD;
    /* MAP_NORESERVE: 20,000 stacks of 128 KiB are 2.5 GiB of address space, of which the
     * robots touch a few pages each. */
    void *m = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
        free(t);
        return NULL;
    }
    t->map = m;
    (void)mprotect(t->map, FLEET_GUARD, PROT_NONE);
    if (context_get(&t->ctx) != 0) {
        task_free(t);
        return NULL;
    }
    t->ctx.uc_stack.ss_sp = t->map + FLEET_GUARD;
    t->ctx.uc_stack.ss_size = stack;
    t->ctx.uc_link = NULL;
    makecontext(&t->ctx, task_entry, 0);
    t->w = w;
    t->fn = fn;
    t->arg = arg;
    t->self = self;
    t->fd = -1;
    t->state = T_READY;
    return t;
}

static void resume(struct fleet_worker *w, struct fleet_task *t) {
    cur_task = t;
    robot_sim_self = t->self;
    w->switches++;
#ifdef FLEET_ASAN
    __sanitizer_start_switch_fiber(&w->main_fake, t->ctx.uc_stack.ss_sp, t->ctx.uc_stack.ss_size);
#endif
    swapcontext(&w->main_ctx, &t->ctx);
#ifdef FLEET_ASAN
    __sanitizer_finish_switch_fiber(w->main_fake, NULL, NULL);
#endif
    cur_task = NULL;
    robot_sim_self = NULL;
}

/* The port's waiter (fkd_posix_wait_fn) on a worker thread: parks the running task. */
static int task_wait(int fd, short events, uint32_t timeout_ms) {
    struct fleet_task *t = cur_task;
    if (t == NULL) { /* the worker's own code: never waits through the port */
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        return poll(&p, fd >= 0 ? 1 : 0, (int)timeout_ms);
    }
    struct fleet_worker *w = t->w;
    if (fd >= 0 && timeout_ms == 0) {
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        return poll(&p, 1, 0); /* a look, not a wait: no reason to give the worker up */
    }
    int registered = 0;
    if (fd >= 0) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = ((events & POLLIN) ? EPOLLIN : 0u) | ((events & POLLOUT) ? EPOLLOUT : 0u);
        ev.data.ptr = t;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            return -1; /* errno from epoll_ctl: the caller treats it as a socket error */
        }
        registered = 1;
        w->waits++;
    }
    t->fd = fd;
    t->deadline = fkd_net_now_ms() + timeout_ms;
    t->result = 0;
    t->state = T_WAIT;
    if (t->deadline < w->next_scan) {
        w->next_scan = t->deadline;
    }
    to_worker(t);
    if (registered) {
        (void)epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
    }
    t->fd = -1;
    return t->result;
}

/* Looks at every task: wakes those whose time came (their wait returns 0), frees the ended
 * ones, and sets when to look again: the nearest deadline, but not sooner than FLEET_TICK_MS
 * from now. The only pass over all tasks; a socket event wakes its task alone. */
static void scan(struct fleet_worker *w, uint64_t now) {
    uint64_t next = now + 1000;
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct fleet_task *t = w->t[i];
        if (t->state == T_WAIT && t->deadline <= now) {
            t->result = 0;
            make_ready(w, t);
        } else if (t->state == T_WAIT && t->deadline < next) {
            next = t->deadline;
        }
        if ((t->state == T_DONE && !t->joinable) || t->state == T_REAPED) {
            task_free(t);
            continue;
        }
        w->t[k++] = t;
    }
    w->n = k;
    w->next_scan = next > now + FLEET_TICK_MS ? next : now + FLEET_TICK_MS;
}

/* Resumes the tasks queued ready when it was called, oldest first (what they make ready runs
 * in the next round, after the sockets were looked at). */
static void run_queue(struct fleet_worker *w) {
    struct task_queue q = w->ready;
    w->ready.head = w->ready.tail = NULL;
    for (struct fleet_task *t; (t = queue_pop(&q)) != NULL;) {
        t->queued = 0;
        if (t->state == T_READY) {
            resume(w, t);
            if (t->state == T_DONE || t->state == T_REAPED) {
                w->next_scan = 0; /* free it soon */
            }
        }
    }
}

static void *worker_main(void *arg) {
    struct fleet_worker *w = arg;
    fkd_posix_set_waiter(task_wait);
    struct epoll_event ev[FLEET_EVENTS];
    w->next_scan = 0;
    for (;;) {
        uint64_t now = fkd_net_now_ms();
        if (now >= w->next_scan) {
            scan(w, now);
            if (w->n == 0) {
                break; /* every task ended */
            }
        }
        run_queue(w);
        now = fkd_net_now_ms();
        int ms = w->ready.head != NULL || w->next_scan <= now ? 0 : (int)(w->next_scan - now);
        int r = epoll_wait(w->ep, ev, FLEET_EVENTS, ms);
        for (int i = 0; i < r; i++) {
            struct fleet_task *t = ev[i].data.ptr;
            if (t->state == T_WAIT && t->fd >= 0) {
                t->result = 1; /* readable, writable, or an error the next call reports */
                make_ready(w, t);
            }
        }
    }
    fkd_posix_set_waiter(NULL);
    return NULL;
}

int fleet_sched_new(struct fleet_sched **out, unsigned threads, unsigned slots) {
    *out = NULL;
    if (threads == 0 || threads > 256 || slots == 0 || slots > 4096) {
        return -1;
    }
    struct fleet_sched *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return -1;
    }
    s->w = calloc(threads, sizeof *s->w);
    if (s->w == NULL) {
        free(s);
        return -1;
    }
    s->nw = threads;
    for (unsigned i = 0; i < threads; i++) {
        s->w[i].s = s;
        s->w[i].slots_free = slots;
        s->w[i].ep = epoll_create1(EPOLL_CLOEXEC);
        if (s->w[i].ep < 0) {
            fleet_sched_free(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

int fleet_sched_add(struct fleet_sched *s, unsigned long index, size_t stack_bytes,
                    uint64_t start_ms, fleet_task_fn *fn, void *arg, const void *self) {
    struct fleet_worker *w = &s->w[index % s->nw];
    struct fleet_task *t = task_new(w, stack_bytes, fn, arg, self);
    if (t == NULL) {
        return -1;
    }
    /* Powered on later (--fleet-ramp-per-s): parked until then, as if it had waited. */
    t->state = T_WAIT;
    t->deadline = start_ms;
    if (add_task(w, t) != 0) {
        task_free(t);
        return -1;
    }
    return 0;
}

int fleet_sched_start(struct fleet_sched *s) {
    int started = 0;
    for (unsigned i = 0; i < s->nw; i++) {
        if (pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]) == 0) {
            s->w[i].started = 1;
            started++;
        }
    }
    return started > 0 ? 0 : -1;
}

void fleet_sched_join_all(struct fleet_sched *s) {
    for (unsigned i = 0; i < s->nw; i++) {
        if (s->w[i].started) {
            pthread_join(s->w[i].thread, NULL);
            s->w[i].started = 0;
        }
    }
}

void fleet_sched_free(struct fleet_sched *s) {
    if (s == NULL) {
        return;
    }
    for (unsigned i = 0; i < s->nw; i++) {
        struct fleet_worker *w = &s->w[i];
        for (size_t k = 0; k < w->n; k++) {
            task_free(w->t[k]);
        }
        free(w->t);
        if (w->ep >= 0) {
            close(w->ep);
        }
    }
    free(s->w);
    free(s);
}

int fleet_sched_in_task(void) {
    return cur_task != NULL;
}

struct fleet_task *fleet_sched_spawn(size_t stack_bytes, fleet_task_fn *fn, void *arg,
                                     const void *self) {
    struct fleet_task *me = cur_task;
    if (me == NULL) {
        return NULL;
    }
    struct fleet_task *t = task_new(me->w, stack_bytes, fn, arg, self);
    if (t == NULL) {
        return NULL;
    }
    t->joinable = 1;
    if (add_task(me->w, t) != 0) {
        task_free(t);
        return NULL;
    }
    make_ready(me->w, t);
    return t;
}

void fleet_sched_join(struct fleet_task *t) {
    while (t->state != T_DONE) {
        (void)task_wait(-1, 0, 20); /* the task ends within a wait slice of its own */
    }
    t->state = T_REAPED; /* the worker frees it */
}

void fleet_sched_get_stats(const struct fleet_sched *s, struct fleet_sched_stats *out) {
    memset(out, 0, sizeof *out);
    out->threads = s->nw;
    for (unsigned i = 0; i < s->nw; i++) {
        out->switches += s->w[i].switches;
        out->waits += s->w[i].waits;
        out->queued += s->w[i].queued;
    }
}

void fleet_sched_slot_take(void) {
    struct fleet_task *t = cur_task;
    if (t == NULL || t->has_slot) {
        return;
    }
    struct fleet_worker *w = t->w;
    if (w->slots_free > 0) {
        w->slots_free--;
        t->has_slot = 1;
        return;
    }
    /* Parked outside the timer scan until a slot is handed over (fleet_sched_slot_give). */
    w->queued++;
    queue_push(&w->slots_wait, t);
    t->state = T_SLOT;
    to_worker(t);
}

void fleet_sched_slot_give(void) {
    struct fleet_task *t = cur_task;
    if (t == NULL || !t->has_slot) {
        return;
    }
    struct fleet_worker *w = t->w;
    t->has_slot = 0;
    struct fleet_task *next = queue_pop(&w->slots_wait);
    if (next == NULL) {
        w->slots_free++;
        return;
    }
    next->has_slot = 1; /* handed over: the slot stays taken */
    make_ready(w, next);
}
