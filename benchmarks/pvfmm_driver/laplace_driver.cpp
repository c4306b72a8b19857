// A small command-line front end to PVFMM's particle Laplace FMM, for benchmarks/vs_pvfmm.py.
//
// Written for fmmloopy; it only calls PVFMM's public API (include/pvfmm.hpp of
// https://github.com/dmalhotra/pvfmm: PtFMM_CreateTree, PtFMM::Initialize, PtFMM_Tree::SetupFMM,
// ClearFMMData, PtFMM_Evaluate; checked against commit 07a67a6 of 2026-06-11).
//
// Input: a raw little-endian float64 file of N points (N x 3, row major) followed by N charges;
// N is the file size over 32 bytes (the file benchmarks/vs_exafmm.py writes). The points are
// both sources and targets.
// Output: N float64 potentials, in the input order, sum_{j, x_j != x_i} q_j / (4 pi |x_i - x_j|)
// (PVFMM's LaplaceKernel<double>::potential() includes the 1/(4 pi) and skips r = 0).
//
// PVFMM wants its points in the unit cube: the driver maps them there with one translation and
// one scale s (x' = (x - c) / s + 1/2, s a little over the bounding box's longest side) and
// multiplies the potentials by 1 / s afterwards (the Laplace kernel is homogeneous of degree -1).
//
// Usage:
//   laplace_driver --input F --output F [--m M] [--max-pts K] [--precomp-dir D]
//                  [--evals E | --serve]
// Prints one JSON line after the set-up (tree, precomputation, SetupFMM) and one per evaluation.
// --evals E (default 1) evaluates E times, writing the last result; --serve instead reads
// commands from stdin, one a line: "eval" (evaluate, write --output, print a JSON line) or
// "quit". PVFMM's own messages to stdout are sent to stderr, so stdout carries only the JSON
// lines. Threads: OpenMP's (OMP_NUM_THREADS). MPI: one rank (run it plainly or with
// mpirun -n 1). --max-pts is PVFMM's max_pts: a leaf is split while its sources and targets
// together number more than that, so with the points both sources and targets a leaf holds at
// most max_pts / 2 points ("max_leaf_points" in the set-up line). --m is PVFMM's multipole
// order (an even number; its equivalent surfaces have 6 (m - 1)^2 + 2 points).
// Precomputation: PtFMM::Initialize saves the operators it computes before the M2L ones
// (check-to-equivalent, U2U, D2D) to D/Precomp_laplace_m<M>.data when that file is not there,
// and loads them from it when it is (the Laplace kernel is scale invariant: the file does not
// depend on the points); the M2L operators are computed at every start. Without
// --precomp-dir, $PVFMM_DIR or else the working directory is used.
//
// Build (double precision; the defines are those PVFMM's CMake build compiles its library with):
//   mpicxx -std=c++17 -O3 -march=native -fopenmp -DSCTL_QUAD_T=__float128 -DSCTL_HAVE_BLAS
//       -DSCTL_HAVE_LAPACK -DSCTL_HAVE_FFTW -I$PVFMM_SRC/include -I$PVFMM_SRC/SCTL/include
//       -I$PVFMM_BUILD laplace_driver.cpp -o laplace_driver -L$PVFMM_BUILD -Wl,-rpath,$PVFMM_BUILD
//       -lpvfmm -lfftw3 -lfftw3f -lopenblas      (one line)

#include <mpi.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <pvfmm.hpp>

#include "../driver_support.hpp"

namespace {

using driver_support::Clock;
using driver_support::cpu_seconds;
using driver_support::fail;
using driver_support::read_problem;
using driver_support::seconds_since;
using driver_support::to_int;
using driver_support::write_values;


// The JSON lines go here: the original stdout, PVFMM's std::cout having been moved to stderr.
FILE* protocol = stdout;

void send(const std::string& line) {
  std::fputs(line.c_str(), protocol);
  std::fputc('\n', protocol);
  std::fflush(protocol);
}

struct Options {
  std::string input, output, precomp_dir;
  int m = 10;
  int max_pts = 300;
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
    else if (flag == "--precomp-dir") options.precomp_dir = value;
    else if (flag == "--m") options.m = to_int(value, flag, 2);
    else if (flag == "--max-pts") options.max_pts = to_int(value, flag, 1);
    else if (flag == "--evals") options.evals = to_int(value, flag, 0);
    else fail("unknown option " + flag);
  }
  if (options.input.empty() || options.output.empty()) fail("--input and --output are needed");
  if (options.m % 2) fail("--m must be even (PVFMM's multipole order)");
  return options;
}

bool is_file(const std::string& path) {
  struct stat status;
  return stat(path.c_str(), &status) == 0 && S_ISREG(status.st_mode);
}

// One FMM problem set up once and evaluated on demand.
class Problem {
 public:
  Problem(const Options& options, const std::vector<double>& points,
          const std::vector<double>& charges)
      : options_(options), charges_(charges), n_(charges.size()), matrices_(&memory_) {
    comm_ = MPI_COMM_WORLD;
    auto clock = Clock::now();
    // Into the unit cube: centre of the bounding box to 1/2, its longest side a little under 1.
    double low[3], high[3];
    for (int d = 0; d < 3; ++d) low[d] = high[d] = points[d];
    for (size_t i = 0; i < n_; ++i)
      for (int d = 0; d < 3; ++d) {
        low[d] = std::min(low[d], points[3 * i + d]);
        high[d] = std::max(high[d], points[3 * i + d]);
      }
    double side = 0;
    for (int d = 0; d < 3; ++d) side = std::max(side, high[d] - low[d]);
    scale_ = side > 0 ? side * (1 + 1e-6) : 1.0;
    std::vector<double> unit(3 * n_);
    for (size_t i = 0; i < n_; ++i)
      for (int d = 0; d < 3; ++d)
        unit[3 * i + d] = (points[3 * i + d] - 0.5 * (low[d] + high[d])) / scale_ + 0.5;
    tree_ = pvfmm::PtFMM_CreateTree(unit, charges_, unit, comm_, options.max_pts,
                                    pvfmm::FreeSpace);
    tree_seconds_ = seconds_since(clock);

    const pvfmm::Kernel<double>& kernel = pvfmm::LaplaceKernel<double>::potential();
    if (!options.precomp_dir.empty()) setenv("PVFMM_DIR", options.precomp_dir.c_str(), 1);
    const char* directory = std::getenv("PVFMM_DIR");
    precomp_file_ = (directory && *directory ? std::string(directory) + "/" : std::string())
                    + "Precomp_" + kernel.ker_name + "_m" + std::to_string(options.m) + ".data";
    precompute_loaded_ = is_file(precomp_file_);
    clock = Clock::now();
    matrices_.Initialize(options.m, comm_, &kernel);
    precompute_seconds_ = seconds_since(clock);

    clock = Clock::now();
    tree_->SetupFMM(&matrices_);  // local essential tree, interaction lists, operator data
    setup_fmm_seconds_ = seconds_since(clock);

    auto& nodes = tree_->GetNodeList();
    nodes_ = nodes.size();
    for (auto* node : nodes) {
      if (node->IsLeaf() && !node->IsGhost()) {
        ++leaves_;
        max_leaf_points_ = std::max(max_leaf_points_, size_t(node->src_coord.Dim() / 3));
      }
      depth_ = std::max(depth_, node->Depth());
    }
  }

  ~Problem() { delete tree_; }

  std::string setup_json() const {
    std::ostringstream out;
    out.precision(9);
    out << "{\"event\": \"setup\", \"n\": " << n_ << ", \"m\": " << options_.m
        << ", \"max_pts\": " << options_.max_pts << ", \"threads\": " << omp_get_max_threads()
        << ", \"depth\": " << depth_ << ", \"nodes\": " << nodes_ << ", \"leaves\": " << leaves_
        << ", \"max_leaf_points\": " << max_leaf_points_
        << ", \"scale\": " << scale_ << ", \"tree_seconds\": " << tree_seconds_
        << ", \"precompute_seconds\": " << precompute_seconds_
        << ", \"setup_fmm_seconds\": " << setup_fmm_seconds_
        << ", \"precompute_loaded\": " << (precompute_loaded_ ? "true" : "false")
        << ", \"precompute_file\": \"" << precomp_file_ << "\"}";
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
    tree_->ClearFMMData();  // the passes accumulate: start each evaluation from zero
    lap("clear");
    // Charges into the tree's order, upward and downward passes, potentials to input order.
    pvfmm::PtFMM_Evaluate(tree_, potential, n_, &charges_);
    lap("evaluate");
    const double factor = 1.0 / scale_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n_; ++i) potential[i] *= factor;
    lap("rescale");
    double seconds = seconds_since(total);
    cpu = cpu_seconds() - cpu;
    if (potential.size() != n_) fail("PVFMM returned " + std::to_string(potential.size())
                                     + " values for " + std::to_string(n_) + " targets");

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
  Options options_;
  std::vector<double> charges_;
  size_t n_;
  MPI_Comm comm_;
  pvfmm::mem::MemoryManager memory_{10000000};
  pvfmm::PtFMM<double> matrices_;
  pvfmm::PtFMM_Tree<double>* tree_ = nullptr;
  double scale_ = 1;
  size_t nodes_ = 0, leaves_ = 0, max_leaf_points_ = 0;
  int depth_ = 0;
  bool precompute_loaded_ = false;
  std::string precomp_file_;
  double tree_seconds_ = 0, precompute_seconds_ = 0, setup_fmm_seconds_ = 0;
};

int run(const Options& options) {
  std::vector<double> points, charges, potential;
  read_problem(options.input, points, charges);
  Problem problem(options, points, charges);
  send(problem.setup_json());

  if (!options.serve) {
    for (int k = 0; k < options.evals; ++k) send(problem.evaluate(potential));
    if (options.evals) write_values(options.output, potential);
    return 0;
  }
  std::string command;
  while (std::getline(std::cin, command)) {
    if (command == "quit") break;
    if (command != "eval") fail("unknown command '" + command + "' (eval, quit)");
    std::string line = problem.evaluate(potential);
    write_values(options.output, potential);
    send(line);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // stdout keeps only our JSON lines; anything PVFMM prints goes to stderr.
  std::fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  if (saved < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) fail("cannot redirect stdout");
  protocol = fdopen(saved, "w");
  if (!protocol) fail("cannot open the protocol stream");

  MPI_Init(&argc, &argv);
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (ranks != 1) fail("run with one MPI rank (got " + std::to_string(ranks) + ")");
  Options options = parse(argc, argv);
  int status = run(options);
  MPI_Finalize();
  return status;
}
