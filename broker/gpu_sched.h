/* gpu_sched.h (internal): compute shares. When several pods have GPU work queued, the broker gives
 * the GPU to one pod at a time ("a turn") and picks the next pod by least virtual GPU time
 * (busy nanoseconds charged divided by the pod's share): a weighted fair queue over GPU busy
 * time. A pod alone keeps the GPU and never drains. Shared by every process that serves pods
 * (pod processes are forked after the table exists), so all state lives in one MAP_SHARED
 * mapping with a process-shared robust mutex.
 *
 * Turn protocol: a worker calls broker_sched_enter() before an operation that puts work on the
 * GPU and broker_sched_exit() after it. When another pod waits and the owner's turn is over,
 * the owner process's turn keeper thread (broker_sched_keeper) waits for the owner's operations
 * in flight, drains its context (all its GPU work finished), charges the turn's wall time to the
 * owner, and hands the GPU to the waiting pod with the least virtual time. */
#ifndef BROKER_GPU_SCHED_H
#define BROKER_GPU_SCHED_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SCHED_SLOTS 256
#define SCHED_SLICE_NS 10000000ull   /* a turn lasts at least 10 ms when others wait */
#define SCHED_MAX_SLICES 50           /* no turn longer than 0.5 s while others wait */
#define SCHED_IDLE_NS 50000000ull   /* a pod without GPU work for 50 ms has been idle */
#define SCHED_MAX_TURN_NS 2000000000ull /* an owner that cannot drain in 2 s is passed over */

struct sched;

struct sched_stats {
    uint64_t turn_ns;  /* wall time of this pod's turns under contention (charged) */
    uint64_t wait_ns;  /* time its operations waited for a turn */
    uint64_t turns;
};

/* Creates the shared table (call before forking pod processes). */
int broker_sched_create(struct sched **out);
void broker_sched_destroy(struct sched *s);

/* A slot per pod. share 1..100 (0 is taken as 100). pid: the process that serves the pod (its
 * keeper drains it). Returns the slot index or -ENOSPC. */
int broker_sched_slot_alloc(struct sched *s, unsigned share, pid_t pid);
/* The serving process changed (a pod process was restarted). */
void broker_sched_slot_set_pid(struct sched *s, int slot, pid_t pid);
/* Forgets operations in flight and the turn of a slot whose process died. */
void broker_sched_slot_reset(struct sched *s, int slot);
void broker_sched_slot_free(struct sched *s, int slot);
void broker_sched_slot_stats(struct sched *s, int slot, struct sched_stats *out);

/* Around each operation that puts work on the GPU. */
void broker_sched_enter(struct sched *s, int slot);
void broker_sched_exit(struct sched *s, int slot);

/* Turn keeper: one thread per serving process. drain(arg, slot) finishes every GPU operation of
 * the pod in that slot (0 or a CUresult). Returns when *stop becomes non-zero (wake it with
 * broker_sched_kick). */
typedef int (*sched_drain_fn)(void *arg, int slot);
void broker_sched_keeper(struct sched *s, sched_drain_fn drain, void *arg, _Atomic int *stop);
void broker_sched_kick(struct sched *s);

#endif
