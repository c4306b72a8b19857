// A small command-line front end to exafmm-t's Laplace FMM, for benchmarks/vs_exafmm.py.
//
// Written for fmmloopy; it only calls exafmm-t's public API (headers under include/ of
// https://github.com/exafmm/exafmm-t, checked against commit ed6d0ec of 2021-09-09).
//
// Input: a raw little-endian float64 file of N points (N x 3, row major) followed by N charges;
// N is the file size over 32 bytes. The points are both sources and targets.
// Output: N float64 potentials, in the input order, sum_{j, x_j != x_i} q_j / (4 pi |x_i - x_j|)
// (exafmm-t's Laplace kernel includes the 1/(4 pi) and skips r = 0).
//
// Usage:
//   laplace_driver --input F --output F [--order P] [--ncrit C] [--matrix-file F]
//                  [--evals K | --serve]
// Prints one JSON line after the set-up (tree, lists, precompute) and one per evaluation.
// --evals K (default 1) evaluates K times, writing the last result; --serve instead reads
// commands from stdin, one a line: "eval" (evaluate, write --output, print a JSON line) or
// "quit". Threads: OpenMP's (OMP_NUM_THREADS). exafmm-t saves its precomputed matrices to
// --matrix-file (default: laplace_d_p<P>.dat in the working directory) and loads them from
// there next time when the file's bounding-box radius matches the points' exactly.
//
// Build (double precision: exafmm-t's single-precision build is -DFLOAT, not used here):
//   g++ -std=c++14 -O3 -march=native -fopenmp -I$EXAFMM_T_SRC/include laplace_driver.cpp
//       -o laplace_driver -lfftw3 -lopenblas      (one line)
// exafmm-t always computes potentials and gradients at the targets (P2P, M2P and L2P call its
// gradient kernel; the Node holds 4 values a target); this driver writes only the potentials.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "build_tree.h"
#include "build_list.h"
#include "laplace.h"

#include "../driver_support.hpp"

namespace {

using driver_support::Clock;
using driver_support::cpu_seconds;
using driver_support::fail;
using driver_support::read_problem;
using driver_support::seconds_since;
using driver_support::to_int;
using driver_support::write_values;

using exafmm_t::real_t;

static_assert(sizeof(real_t) == 8, "build exafmm-t in double precision (no -DFLOAT)");

struct Options {
  std::string input, output, matrix_file;
  int order = 6;
  int ncrit = 400;
  int evals = 1;
  bool serve = false;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--serve") {
      options.serve = true;
      continue;
    }
    if (i + 1 >= argc) fail("missing value after " + flag);
    std::string value = argv[++i];
    if (flag == "--input") options.input = value;
    else if (flag == "--output") options.output = value;
    else if (flag == "--matrix-file") options.matrix_file = value;
    else if (flag == "--order") options.order = to_int(value, flag, 2);
    else if (flag == "--ncrit") options.ncrit = to_int(value, flag, 1);
    else if (flag == "--evals") options.evals = to_int(value, flag, 0);
    else fail("unknown option " + flag);
  }
  if (options.input.empty() || options.output.empty()) fail("--input and --output are needed");
  return options;
}

// One FMM problem set up once and evaluated on demand.
class Problem {
 public:
  Problem(const Options& options, const std::vector<double>& points,
          const std::vector<double>& charges)
      : fmm_(options.order, options.ncrit, options.matrix_file), n_(charges.size()) {
    auto clock = Clock::now();
    exafmm_t::Bodies<real_t> sources(n_);
    for (size_t i = 0; i < n_; ++i) {
      sources[i].ibody = static_cast<int>(i);
      for (int d = 0; d < 3; ++d) sources[i].X[d] = points[3 * i + d];
      sources[i].q = charges[i];
    }
    exafmm_t::Bodies<real_t> targets = sources;  // the same points receive the potentials
    exafmm_t::get_bounds(sources, targets, fmm_.x0, fmm_.r0);
    nodes_ = exafmm_t::build_tree(sources, targets, leafs_, nonleafs_, fmm_);
    tree_seconds_ = seconds_since(clock);

    clock = Clock::now();
    exafmm_t::init_rel_coord();
    exafmm_t::build_list(nodes_, fmm_);
    fmm_.M2L_setup(nonleafs_);
    lists_seconds_ = seconds_since(clock);

    clock = Clock::now();
    fmm_.precompute();  // needs r0, hence after the tree
    precompute_seconds_ = seconds_since(clock);
  }

  std::string setup_json() const {
    std::ostringstream out;
    out.precision(9);
    out << "{\"event\": \"setup\", \"n\": " << n_ << ", \"order\": " << fmm_.p
        << ", \"ncrit\": " << fmm_.ncrit << ", \"threads\": " << omp_get_max_threads()
        << ", \"simd_bytes\": " << SIMD_BYTES << ", \"depth\": " << fmm_.depth
        << ", \"nodes\": " << nodes_.size() << ", \"leaves\": " << leafs_.size()
        << ", \"tree_seconds\": " << tree_seconds_ << ", \"lists_seconds\": " << lists_seconds_
        << ", \"precompute_seconds\": " << precompute_seconds_
        << ", \"precompute_loaded\": " << (fmm_.is_precomputed ? "true" : "false")
        << ", \"matrix_file\": \"" << fmm_.filename << "\"}";
    return out.str();
  }

  // Potentials in input order; the time of each stage goes to the JSON line.
  std::string evaluate(std::vector<double>& potential) {
    std::vector<std::pair<const char*, double>> stages;
    double cpu = cpu_seconds();
    auto total = Clock::now();
    auto clock = total;
    auto lap = [&](const char* name) {
      stages.emplace_back(name, seconds_since(clock));
      clock = Clock::now();
    };
    // The passes accumulate into these: start each evaluation from zero.
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto& node = nodes_[i];
      std::fill(node.up_equiv.begin(), node.up_equiv.end(), real_t(0));
      std::fill(node.dn_equiv.begin(), node.dn_equiv.end(), real_t(0));
      std::fill(node.trg_value.begin(), node.trg_value.end(), real_t(0));
    }
    lap("zero");
    // The operators one by one, in the order of exafmm-t's FmmBase::upward_pass and
    // downward_pass (M2M and L2L are recursive OpenMP tasks started from one thread).
    fmm_.P2M(leafs_);
    lap("p2m");
#pragma omp parallel
#pragma omp single nowait
    fmm_.M2M(&nodes_[0]);
    lap("m2m");
    fmm_.P2L(nodes_);
    lap("p2l");
    fmm_.M2P(leafs_);
    lap("m2p");
    fmm_.P2P(leafs_);
    lap("p2p");
    fmm_.M2L(nodes_);
    lap("m2l");
#pragma omp parallel
#pragma omp single nowait
    fmm_.L2L(&nodes_[0]);
    lap("l2l");
    fmm_.L2P(leafs_);
    lap("l2p");
    potential.assign(n_, 0.0);
    for (auto* leaf : leafs_) {
      const std::vector<int>& index = leaf->itrgs;
      for (size_t j = 0; j < index.size(); ++j) potential[index[j]] = leaf->trg_value[4 * j];
    }
    lap("to_input_order");
    double seconds = seconds_since(total);
    cpu = cpu_seconds() - cpu;

    std::ostringstream out;
    out.precision(9);
    out << "{\"event\": \"eval\", \"seconds\": " << seconds << ", \"cpu_seconds\": " << cpu
        << ", \"stages\": {";
    for (size_t i = 0; i < stages.size(); ++i)
      out << (i ? ", " : "") << "\"" << stages[i].first << "\": " << stages[i].second;
    out << "}}";
    return out.str();
  }

 private:
  exafmm_t::LaplaceFmm fmm_;
  size_t n_;
  exafmm_t::Nodes<real_t> nodes_;
  exafmm_t::NodePtrs<real_t> leafs_, nonleafs_;
  double tree_seconds_ = 0, lists_seconds_ = 0, precompute_seconds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  std::vector<double> points, charges, potential;
  read_problem(options.input, points, charges);
  Problem problem(options, points, charges);
  std::cout << problem.setup_json() << std::endl;

  if (!options.serve) {
    for (int k = 0; k < options.evals; ++k) std::cout << problem.evaluate(potential) << std::endl;
    if (options.evals) write_values(options.output, potential);
    return 0;
  }
  std::string command;
  while (std::getline(std::cin, command)) {
    if (command == "quit") break;
    if (command != "eval") fail("unknown command '" + command + "' (eval, quit)");
    std::string line = problem.evaluate(potential);
    write_values(options.output, potential);
    std::cout << line << std::endl;
  }
  return 0;
}
