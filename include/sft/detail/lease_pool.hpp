/// @file lease_pool.hpp
/// sft::detail::LeasePool: objects that pool tasks lease while they run (scratch and packing
/// buffers), instead of each thread keeping its own: whichever thread runs a task, a steady state
/// allocates nothing once enough objects exist, and the caller of a job can create and size them
/// all before the tasks start. Internal.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace sft::detail {

/// Objects created on demand and reused, never freed before the pool. acquire() and release() take
/// a mutex and allocate nothing while a free object exists.
template <class Obj>
class LeasePool {
public:
    /// At least n objects exist.
    void reserve(std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        while (all_.size() < n) add();
    }
    /// f(object) for every object not leased now, under the pool's lock (to grow them before a
    /// job's tasks start: an object leased by another job is left alone).
    template <class F>
    void for_each_free(F&& f) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (Obj* o : free_) f(*o);
    }
    /// A free object (a new one when none is free).
    Obj* acquire() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.empty()) add();
        Obj* o = free_.back();
        free_.pop_back();
        return o;
    }
    void release(Obj* o) noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(o);  // capacity reserved in add(): no allocation
    }

private:
    void add() {
        all_.push_back(std::make_unique<Obj>());
        free_.reserve(all_.size());
        free_.push_back(all_.back().get());
    }
    std::mutex mutex_;
    std::vector<std::unique_ptr<Obj>> all_;
    std::vector<Obj*> free_;
};

/// A running task's lease of one object of Pool::instance() (a LeasePool), returned when the
/// lease ends.
template <class Pool>
class Lease {
public:
    Lease() : obj_(Pool::instance().acquire()) {}
    ~Lease() { Pool::instance().release(obj_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    auto& operator*() const noexcept { return *obj_; }

private:
    decltype(Pool::instance().acquire()) obj_;
};

}  // namespace sft::detail
