/* Explicit thread control and libpose's own worker pool.
 *
 * libpose parallelises its forward passes itself: each parallel region is a list of independent
 * tasks (row chunks of a GEMM, query blocks of an attention head, ...) whose split depends only
 * on the shapes, never on the thread count. A task writes only its own outputs and uses only the
 * scratch slot of the worker running it, filled by the task before it is read, so which thread
 * runs which task cannot change a bit of the result: any thread count gives identical output.
 *
 * Threads: pose_set_num_threads(n) starts n - 1 helper threads; the calling thread is worker 0.
 * Workers take tasks from a shared counter (dynamic claiming balances a noisy, shared machine;
 * the split itself stays static). One region runs on the pool at a time: a region started while
 * another runs -- from another application thread sharing a handle, or nested inside a task --
 * runs all its tasks on its own calling thread, which gives the same result.
 *
 * OpenBLAS: inside a region every worker calls a single-threaded sgemm (see pose_set_num_threads
 * for what was measured). Until pose_set_num_threads is called libpose runs on the calling
 * thread and leaves OpenBLAS's threading as the application set it. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pose_internal.h"

#define POOL_MAX_THREADS 1024
/* Regions smaller than this run on the calling thread: waking a helper costs 10-20 us, the time
 * one core takes for ~2 MFLOP. The slide 13 sweep's smallest case (seq 100, dim 64, strided)
 * took 0.049 ms on two threads and 0.041 ms on one. */
#define POOL_MIN_FLOPS 2e6

typedef struct pool {
  pthread_mutex_t lock; /* guards the fields below except next */
  pthread_cond_t wake, done;
  pthread_mutex_t region; /* held by the thread whose region owns the pool */
  pthread_t threads[POOL_MAX_THREADS];
  int helpers;                     /* helper threads running */
  atomic_uint_fast64_t generation; /* bumped for every region (under lock) */
  uint_fast64_t start_generation;  /* generation when the helpers were started */
  pose_task_fn fn;
  void *ctx;
  size_t ntasks;
  atomic_size_t next; /* next task to claim */
  int active;         /* helpers not yet finished with the current region */
  bool quit;
} pool;

static pool g_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .region = PTHREAD_MUTEX_INITIALIZER,
};
static int num_threads = 1;

/* Claims and runs tasks until none are left. */
static void run_tasks(pose_task_fn fn, void *ctx, size_t ntasks, size_t worker) {
  for (;;) {
    size_t t = atomic_fetch_add_explicit(&g_pool.next, 1, memory_order_relaxed);
    if (t >= ntasks) return;
    fn(ctx, t, worker);
  }
}

/* Waits for a region newer than seen (or quit); returns false on quit. Called without lock.
 * No spinning first: spinning 20 us before sleeping did not speed up even the 0.05 ms cases of
 * the slide 13 sweep, and would take CPU from other work on a shared machine. */
static bool wait_region(uint_fast64_t seen) {
  pthread_mutex_lock(&g_pool.lock);
  while (atomic_load(&g_pool.generation) == seen && !g_pool.quit) {
    pthread_cond_wait(&g_pool.wake, &g_pool.lock);
  }
  bool quit = g_pool.quit;
  pthread_mutex_unlock(&g_pool.lock);
  return !quit;
}

static void *helper_main(void *arg) {
  size_t worker = (size_t)(uintptr_t)arg;
  /* Not the current generation: a region may already have started before this thread ran. */
  uint_fast64_t seen = g_pool.start_generation;
  /* OpenBLAS's OpenMP build keeps its thread count per thread (the OpenMP nthreads ICV) and
   * resets its global count from the calling thread's on every call, so each helper must ask
   * for one thread itself; for the pthread build this repeats the global setting. */
  pose_blas_set_threads(1);
  while (wait_region(seen)) {
    pthread_mutex_lock(&g_pool.lock);
    seen = atomic_load(&g_pool.generation);
    pose_task_fn fn = g_pool.fn;
    void *ctx = g_pool.ctx;
    size_t ntasks = g_pool.ntasks;
    pthread_mutex_unlock(&g_pool.lock);
    run_tasks(fn, ctx, ntasks, worker);
    pthread_mutex_lock(&g_pool.lock);
    if (--g_pool.active == 0) pthread_cond_signal(&g_pool.done);
    pthread_mutex_unlock(&g_pool.lock);
  }
  return NULL;
}

static void pool_stop(void) {
  pthread_mutex_lock(&g_pool.lock);
  g_pool.quit = true;
  pthread_cond_broadcast(&g_pool.wake);
  pthread_mutex_unlock(&g_pool.lock);
  for (int i = 0; i < g_pool.helpers; i++) pthread_join(g_pool.threads[i], NULL);
  g_pool.helpers = 0;
  g_pool.quit = false;
}

/* Starts n - 1 helpers; fewer if thread creation fails (results do not depend on the count). */
static void pool_start(int n) {
  g_pool.start_generation = atomic_load(&g_pool.generation);
  for (int i = 0; i < n - 1; i++) {
    if (pthread_create(&g_pool.threads[i], NULL, helper_main, (void *)(uintptr_t)(i + 1)) != 0) {
      break;
    }
    g_pool.helpers = i + 1;
  }
}

/* A forked child has no helper threads: forget them (their stacks are gone with the parent's
 * threads) and reset the locks, so the child's regions run on its calling thread. */
static void pool_after_fork(void) {
  pthread_mutex_init(&g_pool.lock, NULL);
  pthread_cond_init(&g_pool.wake, NULL);
  pthread_cond_init(&g_pool.done, NULL);
  pthread_mutex_init(&g_pool.region, NULL);
  g_pool.helpers = 0;
  g_pool.active = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* Joins the helpers when the library is unloaded (dlclose) or the process exits normally. */
__attribute__((destructor)) static void pool_fini(void) {
  if (g_pool.helpers > 0 && pthread_mutex_trylock(&g_pool.region) == 0) {
    pool_stop();
    pthread_mutex_unlock(&g_pool.region);
  }
}

void pose_parallel_for(size_t ntasks, double flops, pose_task_fn fn, void *ctx) {
  if (ntasks == 0) return;
  if (ntasks == 1 || flops < POOL_MIN_FLOPS || g_pool.helpers == 0 ||
      pthread_mutex_trylock(&g_pool.region) != 0) {
    for (size_t t = 0; t < ntasks; t++) fn(ctx, t, 0);
    return;
  }
  pthread_mutex_lock(&g_pool.lock);
  g_pool.fn = fn;
  g_pool.ctx = ctx;
  g_pool.ntasks = ntasks;
  atomic_store_explicit(&g_pool.next, 0, memory_order_relaxed);
  g_pool.active = g_pool.helpers;
  atomic_fetch_add_explicit(&g_pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&g_pool.wake);
  pthread_mutex_unlock(&g_pool.lock);
  run_tasks(fn, ctx, ntasks, 0);
  pthread_mutex_lock(&g_pool.lock);
  while (g_pool.active > 0) pthread_cond_wait(&g_pool.done, &g_pool.lock);
  pthread_mutex_unlock(&g_pool.lock);
  pthread_mutex_unlock(&g_pool.region);
}

/* OpenBLAS threading. libpose calls a single-threaded sgemm from each of its workers and sets
 * OpenBLAS to one thread here. Measured on the 2-core AMD EPYC (Zen 5) VM with Debian's
 * OpenBLAS 0.3.21 (DYNAMIC_ARCH, Haswell kernels chosen), pthread build (libopenblas0-pthread,
 * the default) and OpenMP build (libopenblas0-openmp), 2 threads, pose_bench medians (the
 * machine is shared: +-10%):
 *                                      slide 8 full  strided sep h1  encoder  classifier
 *   A  pool 2, OpenBLAS 1    pthread         0.69 s         0.062 s  0.150 s     0.288 s
 *      (chosen)              OpenMP          0.64 s         0.060 s  0.154 s     0.266 s
 *   B  pool 2, OpenBLAS 2    pthread         3.80 s         0.198 s
 *                            OpenMP          2.15 s         0.117 s
 *   C  libpose serial,       pthread         1.10 s         0.080 s  0.263 s     0.453 s
 *      OpenBLAS 2            OpenMP          0.76 s         0.059 s  0.175 s     0.289 s
 * B oversubscribes: each worker's sgemm wakes OpenBLAS's own threads on cores the other worker
 * is using. C pays a thread hand-off on every 256 x 512 x 32 tile GEMM (cheaper with OpenMP's
 * spinning team) and runs the small per-sequence GEMMs of the models on one core. For one
 * large GEMM A and C are equal: 2048^3 split in 256-row tiles over the pool reaches 209-219
 * GFLOP/s, OpenBLAS's own two threads 210-218. Either OpenBLAS build serves; A must set each
 * helper's count itself for the OpenMP build (see helper_main), without which A ran at 1.26 s. */
pose_status pose_set_num_threads(int n) {
  if (n < 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "pose_set_num_threads: n is %d, need >= 0", n);
  }
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)(cpus > POOL_MAX_THREADS ? POOL_MAX_THREADS : cpus) : 1;
  }
  if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
  pthread_once(&fork_once, register_fork_handler);
  pthread_mutex_lock(&g_pool.region); /* wait for a running region (misuse, but be safe) */
  if (g_pool.helpers != n - 1) {
    pool_stop();
    pool_start(n);
  }
  num_threads = n;
  pthread_mutex_unlock(&g_pool.region);
  pose_blas_set_threads(1);
  return POSE_OK;
}

int pose_get_num_threads(void) { return num_threads; }

int pose_threads(void) { return num_threads; }
