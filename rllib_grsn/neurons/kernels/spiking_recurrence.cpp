// Fused element-wise recurrence of the LIF and GRSN cells (paper Eq. 1, 3-6, 12-14) for a whole
// sequence, forward and backward, on the CPU.
//
// The synaptic projections (Eq. 2 for LIF, the gates F and J of Eq. 14 for GRSN) read only the
// input, so the caller computes them for all T steps in one matrix product and passes them as
// [B, T, H] tensors (any batch and time strides, so slices and expanded windows need no copy). What is left is
// element-wise per neuron and sequential in time. Here every (batch row, neuron) walks its T
// steps in one pass over memory, instead of ~10 framework ops per step with autograd nodes.
//
// Numerics mirror the reference `SpikingCell.dynamics` op for op (torch.lerp's fused
// multiply-add form included), so the spikes are identical to the step-by-step reference on the
// same inputs. Compile with -ffp-contract=off so the compiler does not fuse anything else.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

namespace {

constexpr int64_t kLIF = 0;
constexpr int64_t kGRSN = 1;

// torch.lerp(start, end, w) on the CPU (ATen/native/Lerp.h, lerp_vec): start + w * (end - start)
// as one fused multiply-add, with the "large weight" branch that keeps w = 1 exact.
template <typename scalar_t>
inline scalar_t lerp(scalar_t start, scalar_t end, scalar_t w) {
  const bool small = std::abs(w) < scalar_t(0.5);
  const scalar_t coeff = small ? w : w - scalar_t(1);
  const scalar_t base = small ? start : end;
  return std::fma(coeff, end - start, base);
}

// Membrane after the spike's reset: Eq. 12 (GRSN, soft) or Eq. 3 with u_r = 0 (LIF, hard).
template <typename scalar_t>
inline scalar_t reset(scalar_t u, bool spike, scalar_t threshold, int64_t kind) {
  if (kind == kGRSN) {
    return spike ? u - threshold : u;
  }
  return spike ? scalar_t(0) : u;
}

// Elements (steps x neurons) of work per parallel chunk of batch rows: below this, threads cost
// more than they save.
constexpr int64_t kGrainElements = 1 << 15;

int64_t grain_rows(int64_t steps, int64_t hidden) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, steps * hidden));
}

// A [B, T, H] input with unit stride over neurons, read in place through its batch/time strides.
template <typename scalar_t>
struct Seq {
  const scalar_t* data;
  int64_t batch_stride, time_stride;
  const scalar_t* row(int64_t b, int64_t t) const { return data + b * batch_stride + t * time_stride; }
};

at::Tensor unit_inner_stride(const at::Tensor& x) {
  return x.stride(2) == 1 ? x : x.contiguous();
}

void check_inputs(const at::Tensor& drive, const std::optional<at::Tensor>& forget,
                  const at::Tensor& u0, const at::Tensor& c0, const at::Tensor& beta,
                  int64_t kind) {
  TORCH_CHECK(kind == kLIF || kind == kGRSN, "kind must be 0 (LIF) or 1 (GRSN), got ", kind);
  TORCH_CHECK(drive.dim() == 3, "drive must be [B, T, H], got ", drive.sizes());
  TORCH_CHECK(forget.has_value() == (kind == kGRSN), "GRSN needs the forget gate, LIF none");
  if (forget.has_value()) {
    TORCH_CHECK(forget->sizes() == drive.sizes(), "forget and drive shapes differ");
  }
  TORCH_CHECK(u0.dim() == 2 && u0.sizes() == c0.sizes() && u0.size(0) == drive.size(0) &&
                  u0.size(1) == drive.size(2),
              "u0 and c0 must be [B, H]");
  TORCH_CHECK(beta.dim() == 1 && beta.size(0) == drive.size(2), "beta must be [H]");
  TORCH_CHECK(drive.device().is_cpu(), "the CPU kernel got a tensor on ", drive.device());
}

// One batch row's T steps forward. Templated on the cell so the inner loop over neurons has no
// branch on it, and with restrict pointers, so the compiler vectorises that loop.
template <typename scalar_t, bool GRSN>
void forward_row(Seq<scalar_t> drive, Seq<scalar_t> forget, int64_t b,
                 const scalar_t* __restrict__ c0, const scalar_t* __restrict__ beta,
                 scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                 scalar_t* __restrict__ current, scalar_t* __restrict__ u_hat, int64_t steps,
                 int64_t hidden, scalar_t theta) {
  const scalar_t* c_prev = c0;
  for (int64_t t = 0; t < steps; ++t) {
    const scalar_t* __restrict__ j_t = drive.row(b, t);
    const scalar_t* __restrict__ f_t = GRSN ? forget.row(b, t) : j_t;
    scalar_t* __restrict__ o_t = spikes + t * hidden;
    scalar_t* __restrict__ u_t = membrane + t * hidden;
    scalar_t* __restrict__ c_t = current + t * hidden;
#pragma omp simd
    for (int64_t h = 0; h < hidden; ++h) {
      // Eq. 13 c_t = F c_{t-1} + (1 - F) J (GRSN); Eq. 2 c_t = W x_t + b (LIF).
      const scalar_t c = GRSN ? lerp(j_t[h], c_prev[h], f_t[h]) : j_t[h];
      const scalar_t u = lerp(c, u_hat[h], beta[h]);  // Eq. 1
      const bool spike = (u - theta) >= scalar_t(0);  // Eq. 4-5, Θ(0) = 1
      o_t[h] = spike ? scalar_t(1) : scalar_t(0);
      u_t[h] = u;
      c_t[h] = c;
      u_hat[h] = reset(u, spike, theta, GRSN ? kGRSN : kLIF);
    }
    c_prev = c_t;
  }
}

// One batch row's T steps in reverse time: the chain rule of forward_row, differentiating the
// reset through the spike as the reference does. g_u / g_c carry d u_hat_t / d c_t backwards.
template <typename scalar_t, bool GRSN>
void backward_row(const scalar_t* __restrict__ grad_spikes, Seq<scalar_t> drive,
                  Seq<scalar_t> forget, int64_t b, const scalar_t* __restrict__ u0,
                  const scalar_t* __restrict__ c0, const scalar_t* __restrict__ beta,
                  const scalar_t* __restrict__ membrane, const scalar_t* __restrict__ current,
                  scalar_t* __restrict__ grad_drive, scalar_t* __restrict__ grad_forget,
                  scalar_t* __restrict__ g_u, scalar_t* __restrict__ g_c,
                  scalar_t* __restrict__ g_beta, int64_t steps, int64_t hidden, scalar_t theta,
                  scalar_t alpha, scalar_t slope) {
  for (int64_t t = steps - 1; t >= 0; --t) {
    const scalar_t* __restrict__ j_t = drive.row(b, t);
    const scalar_t* __restrict__ f_t = GRSN ? forget.row(b, t) : j_t;
    scalar_t* __restrict__ gj_t = grad_drive + t * hidden;
    scalar_t* __restrict__ gf_t = GRSN ? grad_forget + t * hidden : gj_t;
    const scalar_t* __restrict__ go_t = grad_spikes + t * hidden;
    const scalar_t* __restrict__ u_t = membrane + t * hidden;
    const scalar_t* __restrict__ c_t = current + t * hidden;
    // State before step t: the previous step's (reset) membrane and current, or the initial ones.
    const scalar_t* __restrict__ u_before = t > 0 ? membrane + (t - 1) * hidden : u0;
    const scalar_t* __restrict__ c_before = t > 0 ? current + (t - 1) * hidden : c0;
    const bool before_is_raw = t > 0;  // membrane[] is before reset; u0 is already u_hat
    const bool last = t == steps - 1;
#pragma omp simd
    for (int64_t h = 0; h < hidden; ++h) {
      const scalar_t u = u_t[h];
      const scalar_t x = u - theta;
      const bool spike = x >= scalar_t(0);
      scalar_t du, d_spike;
      if (GRSN) {  // Eq. 12: u_hat = u - theta o
        du = g_u[h];
        d_spike = go_t[h] - theta * g_u[h];
      } else {  // Eq. 3: u_hat = u_r o + (1 - o) u, u_r = 0
        du = spike ? scalar_t(0) : g_u[h];
        d_spike = go_t[h] - u * g_u[h];
      }
      const scalar_t z = slope * x;
      du += d_spike * (alpha / (scalar_t(2) * (scalar_t(1) + z * z)));  // Eq. 6 surrogate
      const scalar_t ub = u_before[h];
      const scalar_t u_hat_prev =
          before_is_raw ? reset(ub, (ub - theta) >= scalar_t(0), theta, GRSN ? kGRSN : kLIF) : ub;
      // Eq. 1 u_t = lerp(c_t, u_hat_{t-1}, beta). LIF's c_t reaches the output state only at T.
      const scalar_t carried = GRSN ? g_c[h] : (last ? g_c[h] : scalar_t(0));
      const scalar_t d_c = carried + du * (scalar_t(1) - beta[h]);
      g_beta[h] += du * (u_hat_prev - c_t[h]);
      g_u[h] = du * beta[h];
      if (GRSN) {  // Eq. 13 c_t = lerp(J_t, c_{t-1}, F_t)
        const scalar_t f = f_t[h];
        gf_t[h] = d_c * (c_before[h] - j_t[h]);
        gj_t[h] = d_c * (scalar_t(1) - f);
        g_c[h] = d_c * f;
      } else {  // Eq. 2: c_t is the projection itself
        gj_t[h] = d_c;
      }
    }
  }
  if (!GRSN) {
    for (int64_t h = 0; h < hidden; ++h) g_c[h] = scalar_t(0);  // LIF never reads c_{t-1}
  }
}

template <typename scalar_t>
Seq<scalar_t> seq_of(const at::Tensor& x) {
  return {x.data_ptr<scalar_t>(), x.stride(0), x.stride(1)};
}

// Returns (spikes [B,T,H], membrane before reset [B,T,H], current c_t [B,T,H], u_hat_T [B,H]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spiking_forward(
    const at::Tensor& drive_in, const std::optional<at::Tensor>& forget_in, const at::Tensor& u0,
    const at::Tensor& c0_in, const at::Tensor& beta_in, double threshold, int64_t kind) {
  check_inputs(drive_in, forget_in, u0, c0_in, beta_in, kind);
  const auto drive = unit_inner_stride(drive_in);
  const auto forget = forget_in.has_value() ? unit_inner_stride(*forget_in) : drive;
  const auto c0 = c0_in.contiguous();
  const auto beta = beta_in.contiguous();
  const int64_t batch = drive.size(0), steps = drive.size(1), hidden = drive.size(2);
  auto spikes = at::empty({batch, steps, hidden}, drive.options());
  auto membrane = at::empty({batch, steps, hidden}, drive.options());
  auto current = at::empty({batch, steps, hidden}, drive.options());
  auto u_last = u0.contiguous().clone();  // u_hat, advanced in place to u_hat_T

  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "spiking_forward", [&] {
    const scalar_t theta = static_cast<scalar_t>(threshold);
    const auto fn = kind == kGRSN ? &forward_row<scalar_t, true> : &forward_row<scalar_t, false>;
    const auto j = seq_of<scalar_t>(drive);
    const auto f = seq_of<scalar_t>(forget);
    const scalar_t* cz = c0.data_ptr<scalar_t>();
    const scalar_t* bt = beta.data_ptr<scalar_t>();
    scalar_t* o = spikes.data_ptr<scalar_t>();
    scalar_t* u = membrane.data_ptr<scalar_t>();
    scalar_t* c = current.data_ptr<scalar_t>();
    scalar_t* uh = u_last.data_ptr<scalar_t>();
    at::parallel_for(0, batch, grain_rows(steps, hidden), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t seq = b * steps * hidden;
        fn(j, f, b, cz + b * hidden, bt, o + seq, u + seq, c + seq, uh + b * hidden, steps, hidden,
           theta);
      }
    });
  });
  return {spikes, membrane, current, u_last};
}

// Reverse-time pass. Returns (d drive [B,T,H], d forget [B,T,H] (GRSN; empty for LIF),
// d u0 [B,H], d c0 [B,H], d beta per row [B,H]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> spiking_backward(
    const at::Tensor& grad_spikes_in, const at::Tensor& grad_u_last,
    const at::Tensor& grad_c_last, const at::Tensor& drive_in,
    const std::optional<at::Tensor>& forget_in, const at::Tensor& u0_in, const at::Tensor& c0_in,
    const at::Tensor& beta_in, const at::Tensor& membrane_in, const at::Tensor& current_in,
    double threshold, double alpha, int64_t kind) {
  check_inputs(drive_in, forget_in, u0_in, c0_in, beta_in, kind);
  const auto g_o = grad_spikes_in.contiguous();
  const auto drive = unit_inner_stride(drive_in);
  const auto forget = forget_in.has_value() ? unit_inner_stride(*forget_in) : drive;
  const auto u0 = u0_in.contiguous();
  const auto c0 = c0_in.contiguous();
  const auto beta = beta_in.contiguous();
  const auto membrane = membrane_in.contiguous();
  const auto current = current_in.contiguous();
  const int64_t batch = drive.size(0), steps = drive.size(1), hidden = drive.size(2);
  auto g_drive = at::empty({batch, steps, hidden}, drive.options());
  auto g_forget = kind == kGRSN ? at::empty({batch, steps, hidden}, drive.options())
                                : at::empty({0}, drive.options());
  auto g_u = grad_u_last.contiguous().clone();  // carried d u_hat_t, ends as d u0
  auto g_c = grad_c_last.contiguous().clone();  // carried d c_t, ends as d c0
  auto g_beta = at::zeros({batch, hidden}, drive.options());

  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "spiking_backward", [&] {
    const scalar_t theta = static_cast<scalar_t>(threshold);
    // Eq. 6 h'(x) = alpha / (2 (1 + (slope x)^2)), slope = pi/2 alpha, as the reference computes it.
    const scalar_t a = static_cast<scalar_t>(alpha);
    const scalar_t slope = static_cast<scalar_t>(M_PI / 2.0 * alpha);
    const auto fn = kind == kGRSN ? &backward_row<scalar_t, true> : &backward_row<scalar_t, false>;
    const auto j = seq_of<scalar_t>(drive);
    const auto f = seq_of<scalar_t>(forget);
    const scalar_t* go = g_o.data_ptr<scalar_t>();
    const scalar_t* uz = u0.data_ptr<scalar_t>();
    const scalar_t* cz = c0.data_ptr<scalar_t>();
    const scalar_t* bt = beta.data_ptr<scalar_t>();
    const scalar_t* mem = membrane.data_ptr<scalar_t>();
    const scalar_t* cur = current.data_ptr<scalar_t>();
    scalar_t* gj = g_drive.data_ptr<scalar_t>();
    scalar_t* gf = kind == kGRSN ? g_forget.data_ptr<scalar_t>() : nullptr;
    scalar_t* gu = g_u.data_ptr<scalar_t>();
    scalar_t* gc = g_c.data_ptr<scalar_t>();
    scalar_t* gb = g_beta.data_ptr<scalar_t>();
    at::parallel_for(0, batch, grain_rows(steps, hidden), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t seq = b * steps * hidden, row = b * hidden;
        fn(go + seq, j, f, b, uz + row, cz + row, bt, mem + seq, cur + seq, gj + seq,
           gf == nullptr ? nullptr : gf + seq, gu + row, gc + row, gb + row, steps, hidden, theta,
           a, slope);
      }
    });
  });
  return {g_drive, g_forget, g_u, g_c, g_beta};
}

}  // namespace

TORCH_LIBRARY(rllib_grsn_cpu, m) {
  m.def(
      "spiking_forward(Tensor drive, Tensor? forget, Tensor u0, Tensor c0, Tensor beta,"
      " float threshold, int kind) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "spiking_backward(Tensor grad_spikes, Tensor grad_u_last, Tensor grad_c_last, Tensor drive,"
      " Tensor? forget, Tensor u0, Tensor c0, Tensor beta, Tensor membrane, Tensor current,"
      " float threshold, float alpha, int kind) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rllib_grsn_cpu, CPU, m) {
  m.impl("spiking_forward", &spiking_forward);
  m.impl("spiking_backward", &spiking_backward);
}
