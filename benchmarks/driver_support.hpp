// What the peer drivers of benchmarks/ (exafmm_driver/, pvfmm_driver/) share: timing, errors,
// integer options and the problem file (N points, N x 3 float64 row major, then N charges;
// N is the file size over 32 bytes) and the potentials written back (N float64).
// Written for fmmloopy.

#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace driver_support {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// User + system CPU seconds of the process, all threads.
inline double cpu_seconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec
         + 1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

[[noreturn]] inline void fail(const std::string& message) {
  std::cerr << "laplace_driver: " << message << std::endl;
  std::exit(2);
}

inline int to_int(const std::string& text, const std::string& name, int lowest) {
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < lowest || value > 1000000000)
    fail(name + " must be an integer >= " + std::to_string(lowest) + ", not '" + text + "'");
  return static_cast<int>(value);
}

// Points (n x 3) and charges (n) from the raw float64 file.
inline void read_problem(const std::string& path, std::vector<double>& points,
                         std::vector<double>& charges) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) fail("cannot open " + path);
  std::streamoff bytes = file.tellg();
  if (bytes <= 0 || bytes % 32 != 0) fail(path + ": size is not a positive multiple of 32 bytes");
  size_t n = static_cast<size_t>(bytes / 32);
  points.resize(3 * n);
  charges.resize(n);
  file.seekg(0);
  file.read(reinterpret_cast<char*>(points.data()), 24 * n);
  file.read(reinterpret_cast<char*>(charges.data()), 8 * n);
  if (!file) fail("short read from " + path);
}

inline void write_values(const std::string& path, const std::vector<double>& values) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(values.data()), 8 * values.size());
  if (!file) fail("cannot write " + path);
}

}  // namespace driver_support
