/* robot-sim --fleet's scheduler: thousands of robots on a fixed number of threads.
 *
 * A robot's code (the boot, the DTLS listener's loop, the wss client of the device library) is
 * written as blocking calls with bounded waits, one thread each. Here each of them is instead
 * a task: a stack of its own run by one of T worker threads, which switches to another task
 * whenever the running one waits. Every wait of the device library goes through the POSIX
 * port (fkd_posix_set_waiter, fkd_posix.h): the worker installs a waiter that registers the
 * socket with its epoll set and parks the task until the socket is ready or the timeout ends.
 * So a fleet of N robots runs on T threads (default: one per core) with N * 2 stacks, and a
 * wake-up costs a context switch inside the process, not a kernel thread switch.
 *
 * Tasks never move between workers: a task and the tasks it spawns share one worker, so the
 * thread-local state of the robot code (robot_sim_self) is set on every switch to the task.
 * A task must not hold a lock across a wait (the robot code holds rot_lock only around flash
 * and NVS work, which does not wait). */
#ifndef ROBOT_SIM_FLEET_SCHED_H
#define ROBOT_SIM_FLEET_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct fleet_sched;
struct fleet_task;

typedef void fleet_task_fn(void *arg);

/* A scheduler of threads workers (1..256) with slots connection slots each (1..4096, see
 * fleet_sched_slot_take). 0, or -1 (out of memory, no epoll). */
int fleet_sched_new(struct fleet_sched **out, unsigned threads, unsigned slots);
/* Before fleet_sched_start, from the creating thread: a task of worker (index % threads) that
 * begins fn(arg) not before the monotonic time start_ms (fkd_net_now_ms), on a stack of
 * stack_bytes. self is what robot_sim_self is set to while it runs. 0, or -1. */
int fleet_sched_add(struct fleet_sched *s, unsigned long index, size_t stack_bytes,
                    uint64_t start_ms, fleet_task_fn *fn, void *arg, const void *self);
/* Starts the worker threads. 0, or -1 (none started). */
int fleet_sched_start(struct fleet_sched *s);
/* Waits until every task ended and the workers stopped. */
void fleet_sched_join_all(struct fleet_sched *s);
/* Frees the scheduler (after fleet_sched_join_all, or when it was never started). */
void fleet_sched_free(struct fleet_sched *s);

/* Inside a task: 1; on any other thread 0. */
int fleet_sched_in_task(void);
/* Inside a task: a task on the same worker running fn(arg) at once. Returns it (to be joined
 * with fleet_sched_join), or NULL (out of memory). */
struct fleet_task *fleet_sched_spawn(size_t stack_bytes, fleet_task_fn *fn, void *arg,
                                     const void *self);
/* Inside a task: waits (without blocking the worker) until t ended; t is freed. */
void fleet_sched_join(struct fleet_task *t);

/* Connection slots: admission control for the expensive steps. A task runs until it waits, so
 * a worker's pass over its ready tasks lasts as long as their CPU work together; with
 * thousands of robots in TLS handshakes at once (about 8 ms of mbedTLS each), a robot whose
 * upgrade was answered would wait seconds for its turn to send hello, the server would close
 * it (hello_timeout), and it would come back for another handshake: congestion collapse. The
 * kernel's scheduler hid this under threads by preempting. So a robot takes a slot of its
 * worker before each connection attempt and gives it back once connected or failed: at most
 * `slots` handshakes per worker are under way, the others queue (first come, first served).
 * Outside a task both are no-ops; give is idempotent, and a task that ends gives its slot. */
void fleet_sched_slot_take(void);
void fleet_sched_slot_give(void);

/* Statistics of a finished run, for the summary line. */
struct fleet_sched_stats {
    unsigned threads;
    unsigned long long switches; /* task resumptions */
    unsigned long long waits;    /* waits on a socket */
    unsigned long long queued;   /* connection attempts that waited for a slot */
};
void fleet_sched_get_stats(const struct fleet_sched *s, struct fleet_sched_stats *out);

#endif
