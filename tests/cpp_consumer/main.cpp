// C++ consumer of kvinfer: merges two attention states held in cudaMalloc'd buffers through
// DLTensor views, checks the result on the host, and checks that bad input raises kvinfer::Error.
// Exit code 0 and "kvinfer C++ consumer OK" on success; 2 when there is no GPU.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>
#include <kvinfer/kvinfer.h>

#define CHECK_CUDA(x)                                                             \
  do {                                                                            \
    cudaError_t e = (x);                                                          \
    if (e != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e));         \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

static DLTensor f32_tensor(float* data, int ndim, int64_t* shape) {
  DLTensor t{};
  t.data = data;
  t.device = DLDevice{kDLCUDA, 0};
  t.ndim = ndim;
  t.dtype = DLDataType{kDLFloat, 32, 1};
  t.shape = shape;
  t.strides = nullptr;  // compact row-major
  return t;
}

int main() {
  std::printf("kvinfer %s, %d instances\n", kvinfer::version(), kvinfer::num_instances());
  if (kvinfer::device_count() == 0) {
    std::printf("no GPU: not running kernels\n");
    return 2;
  }
  std::printf("%s\n", kvinfer::device_description(0).c_str());
  const int64_t seq = 37, heads = 5, dim = 96;
  const size_t nv = seq * heads * dim, ns = seq * heads;
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd;
  std::vector<float> va(nv), vb(nv), sa(ns), sb(ns), vo(nv), so(ns);
  for (auto& x : va) x = nd(rng);
  for (auto& x : vb) x = nd(rng);
  for (auto& x : sa) x = 4 * nd(rng);
  for (auto& x : sb) x = 4 * nd(rng);
  sb[3] = -INFINITY;  // an empty state: the other wins
  sa[7] = sb[7] = -INFINITY;  // both empty: 0 and -inf

  float *d_va, *d_vb, *d_sa, *d_sb, *d_vo, *d_so;
  for (float** p : {&d_va, &d_vb, &d_vo}) CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(p), nv * sizeof(float)));
  for (float** p : {&d_sa, &d_sb, &d_so}) CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(p), ns * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(d_va, va.data(), nv * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_vb, vb.data(), nv * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_sa, sa.data(), ns * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_sb, sb.data(), ns * 4, cudaMemcpyHostToDevice));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));

  int64_t vshape[3] = {seq, heads, dim}, sshape[2] = {seq, heads};
  DLTensor t_va = f32_tensor(d_va, 3, vshape), t_vb = f32_tensor(d_vb, 3, vshape), t_vo = f32_tensor(d_vo, 3, vshape);
  DLTensor t_sa = f32_tensor(d_sa, 2, sshape), t_sb = f32_tensor(d_sb, 2, sshape), t_so = f32_tensor(d_so, 2, sshape);
  try {
    kvinfer::TensorView s_out = kvinfer::view_of(t_so, "s_out");
    kvinfer::merge_state(kvinfer::view_of(t_va, "v_a"), kvinfer::view_of(t_sa, "s_a"), kvinfer::view_of(t_vb, "v_b"),
                         kvinfer::view_of(t_sb, "s_b"), kvinfer::view_of(t_vo, "v_out"), &s_out, stream);
  } catch (const kvinfer::Error& e) {
    std::fprintf(stderr, "merge_state failed: %s\n", e.what());
    return 1;
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaMemcpy(vo.data(), d_vo, nv * 4, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(so.data(), d_so, ns * 4, cudaMemcpyDeviceToHost));

  double max_err = 0;
  for (int64_t r = 0; r < seq * heads; ++r) {
    const double m = std::fmax(sa[r], sb[r]);
    const double wa = m == -INFINITY ? 0 : std::exp2(sa[r] - m), wb = m == -INFINITY ? 0 : std::exp2(sb[r] - m);
    const double sum = wa + wb;
    const double s_ref = m == -INFINITY ? -INFINITY : m + std::log2(sum);
    if (!(so[r] == s_ref || std::fabs(so[r] - s_ref) < 1e-4)) {
      std::fprintf(stderr, "lse mismatch at row %lld: %f vs %f\n", (long long)r, so[r], s_ref);
      return 1;
    }
    for (int64_t d = 0; d < dim; ++d) {
      const double ref = sum > 0 ? (wa * va[r * dim + d] + wb * vb[r * dim + d]) / sum : 0.0;
      max_err = std::fmax(max_err, std::fabs(vo[r * dim + d] - ref));
    }
  }
  if (!(max_err < 1e-5)) {
    std::fprintf(stderr, "value mismatch: max error %g\n", max_err);
    return 1;
  }

  bool raised = false;  // a shape mismatch must raise kvinfer::Error(kValueError), not crash
  int64_t bad_shape[2] = {seq + 1, heads};
  DLTensor t_bad = f32_tensor(d_sb, 2, bad_shape);
  try {
    kvinfer::merge_state(kvinfer::view_of(t_va, "v_a"), kvinfer::view_of(t_sa, "s_a"), kvinfer::view_of(t_vb, "v_b"),
                         kvinfer::view_of(t_bad, "s_b"), kvinfer::view_of(t_vo, "v_out"), nullptr, stream);
  } catch (const kvinfer::Error& e) {
    raised = e.kind() == kvinfer::ErrorKind::kValueError;
    std::printf("expected error: %s\n", e.what());
  }
  if (!raised) return 1;
  std::printf("max error %.3g\nkvinfer C++ consumer OK\n", max_err);
  return 0;
}
