// Clock: the only way cpn code learns the time.
//
// Core, scheduler and platform logic take a Clock& so that tests and the
// simulator can drive time by hand (FakeClock) while the server and agent use
// SystemClock. Times are integer milliseconds since the Unix epoch. Both
// implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace cpn {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_ += ms; }
  void SetMs(int64_t ms) { now_ms_ = ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace cpn
