// CUDA kernel of subscale_merge (slices -> image): launch_subscale<true> of csrc/cuda/slices.cuh, which holds
// the kernels split and merge share. Semantics: spn_kernels/ops/subscale_merge/ref.py. Includes only CUDA
// headers and params.h, so bare nvcc compiles this file.
#include "cuda/params.h"
#include "cuda/slices.cuh"

namespace spn {
namespace cuda {

cudaError_t launch_subscale_merge(const SubscaleParams& p, cudaStream_t stream) {
  return launch_subscale<true>(p, stream);
}

}  // namespace cuda
}  // namespace spn
