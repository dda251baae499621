// CUDA kernel of subscale_split (image -> slices): launch_subscale<false> of csrc/cuda/slices.cuh, which holds
// the kernels split and merge share. Semantics: spn_kernels/ops/subscale_split/ref.py. Includes only CUDA
// headers and params.h, so bare nvcc compiles this file.
#include "cuda/params.h"
#include "cuda/slices.cuh"

namespace spn {
namespace cuda {

cudaError_t launch_subscale_split(const SubscaleParams& p, cudaStream_t stream) {
  return launch_subscale<false>(p, stream);
}

}  // namespace cuda
}  // namespace spn
