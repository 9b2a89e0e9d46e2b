# Used by pool_stats.sh: adds counters to a copy of sft/detail/thread_pool.hpp and a per-step
# report to a copy of mlp_epoch.cpp. Fails loudly if the code it patches has changed.
import sys
pool, epoch_src, epoch_dst = sys.argv[1:4]

def sub(text, old, new, what):
    if old not in text:
        sys.exit(f"pool_stats_patch.py: cannot find {what} in the source; update the patch")
    return text.replace(old, new, 1)

s = open(pool).read()
s = sub(s, "namespace sft::detail {", """namespace sft::detail {
struct PoolStats {
    static constexpr long long cap = 1 << 17;  // jobs recorded one by one per epoch
    static inline long long rec_wall[cap]{}, rec_main[cap]{}, rec_worker[cap]{}, rec_tasks[cap]{};
    static inline thread_local long long my_ns = 0;
    static inline std::atomic<long long> wk_ns{0}, jobs{0}, job_ns{0}, main_task_ns{0}, worker_task_ns{0}, main_wait_ns{0}, tasks{0};
    static long long now() { return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
};""", "the namespace")
s = sub(s, """        if (sleeping_.load(std::memory_order_acquire) > 0) wake_.notify_all();
        work_on(job);
""", """        if (sleeping_.load(std::memory_order_acquire) > 0) wake_.notify_all();
        const long long t_start = PoolStats::now();
        PoolStats::my_ns = 0;
        work_on(job, true);
        const long long t_mid = PoolStats::now();
""", "run()'s work_on(job)")
s = sub(s, """        while (job.inside.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    }""", """        while (job.inside.load(std::memory_order_acquire) != 0) std::this_thread::yield();
        const long long t_end = PoolStats::now();
        const long long pos = PoolStats::jobs.load();
        if (pos < PoolStats::cap) {
            PoolStats::rec_wall[pos] = t_end - t_start;
            PoolStats::rec_main[pos] = PoolStats::my_ns;
            PoolStats::rec_worker[pos] = PoolStats::wk_ns.exchange(0);
            PoolStats::rec_tasks[pos] = static_cast<long long>(tasks);
        }
        PoolStats::jobs += 1; PoolStats::job_ns += t_end - t_start; PoolStats::main_wait_ns += t_end - t_mid; PoolStats::tasks += tasks;
    }""", "the end of run()")
i = s.find("static void work_on(Job& job) noexcept {")
j = s.find("job.invoke(job.ctx, t);", i)
if i < 0 or j < 0:
    sys.exit("pool_stats_patch.py: cannot find work_on(); update the patch")
seg = s[i:j + len("job.invoke(job.ctx, t);")]
seg = seg.replace("static void work_on(Job& job) noexcept {", "static void work_on(Job& job, bool main = false) noexcept {")
seg = seg.replace("job.invoke(job.ctx, t);", """const long long a_ = PoolStats::now();
            job.invoke(job.ctx, t);
            const long long d_ = PoolStats::now() - a_;
            (main ? PoolStats::main_task_ns : PoolStats::worker_task_ns) += d_;
            if (main) PoolStats::my_ns += d_; else PoolStats::wk_ns += d_;""")
s = s[:i] + seg + s[j + len("job.invoke(job.ctx, t);"):]
open(pool, "w").write(s)

e = open(epoch_src).read()
e = sub(e, """        epoch_s = now_s() - t0;""", """        epoch_s = now_s() - t0;
        {
            using S = sft::detail::PoolStats;
            const double st = double(steps);
            std::printf("per step: %.1f jobs, %.1f tasks | in jobs %.1f us (caller's tasks %.1f, caller waiting at job ends %.1f; "
                        "workers' tasks %.1f) | outside jobs %.1f us\\n", S::jobs / st, S::tasks / st, S::job_ns / st / 1e3,
                        S::main_task_ns / st / 1e3, S::main_wait_ns / st / 1e3, S::worker_task_ns / st / 1e3,
                        epoch_s * 1e6 / st - S::job_ns / st / 1e3);
            // Job by job over the full steps: the jobs per step of the first steps (the last, short
            // batch may run fewer), checked against the total.
            const long long jobs = S::jobs.load(), per = steps ? (jobs + static_cast<long long>(steps) / 2) / static_cast<long long>(steps) : 0;
            const long long full = static_cast<long long>(steps) - 1;
            if (per > 0 && full > 0 && per * full <= jobs && per * full <= S::cap) {
                for (long long q = 0; q < per; ++q) {
                    double w = 0, m = 0, k = 0, n = 0;
                    for (long long j = q; j < per * full; j += per) w += S::rec_wall[j], m += S::rec_main[j], k += S::rec_worker[j], n += S::rec_tasks[j];
                    const double f = double(full);
                    std::printf("  job %lld of the step: %.0f tasks, wall %.1f us, caller's tasks %.1f us, workers' tasks %.1f us\\n", q,
                                n / f, w / f / 1e3, m / f / 1e3, k / f / 1e3);
                }
            }
            S::jobs = 0; S::job_ns = 0; S::main_task_ns = 0; S::worker_task_ns = 0; S::main_wait_ns = 0; S::tasks = 0;
        }""", "mlp_epoch's epoch timing")
open(epoch_dst, "w").write(e)
