// The element passes for one instruction set. No include guard: kernel.hpp
// includes this file once per instruction set (isa.hpp), each time with
// ADAMX_KERNEL_ISA set (0 baseline, 1 AVX2, 2 AVX-512) and, for AVX2 and
// AVX-512, inside a region that compiles every function defined here for
// that set (kernel.hpp, ADAMX_BEGIN_ISA_REGION). Each inclusion defines the
// same passes in a namespace of its own (detail::isa_baseline, isa_avx2,
// isa_avx512); kernel.hpp's dispatchers call the one the program chose.
//
// What differs between the sets: the width of a chunk's registers (16 or 32
// bytes for the baseline, as the program's flags give; 32 for AVX2; 64 for
// AVX-512, where a chunk holds 16 floats), and the intrinsics of the lanes
// of s, the magnitude test and the bfloat16/half conversions. What does not:
// the update rules' arithmetic, element by element, and the order in which s
// is summed (element k of a block into lane k mod kNormLanes, in element
// order), so every set computes the same bits (docs/design.md, "Instruction
// sets"). The update rules are compiled for the baseline and inlined here:
// they may only use what chunk.hpp offers.
#if !defined(ADAMX_KERNEL_ISA)
#error "adamx/kernel_passes.hpp is included by adamx/kernel.hpp only"
#endif

#if ADAMX_KERNEL_ISA == 0
#define ADAMX_KERNEL_ISA_NAMESPACE isa_baseline
#elif ADAMX_KERNEL_ISA == 1
#define ADAMX_KERNEL_ISA_NAMESPACE isa_avx2
#elif ADAMX_KERNEL_ISA == 2
#define ADAMX_KERNEL_ISA_NAMESPACE isa_avx512
#else
#error "ADAMX_KERNEL_ISA must be 0, 1 or 2"
#endif

ADAMX_NAMESPACE_BEGIN
namespace detail {

// The square root of one AVX register (chunk.hpp's RegisterSqrt), compiled
// for this region's set: 32 bytes in the AVX2 region (the AVX-512 passes
// built by g++, whose chunks are 32-byte halves, inline it too), 64 in the
// AVX-512 region. Plain inline, not always-inline: the rules that call it
// are compiled for the baseline (chunk.hpp).
#if ADAMX_KERNEL_ISA == 1
template <class Scalar>
struct RegisterSqrt<Scalar, 32> {
  typedef Scalar Vector __attribute__((vector_size(32), aligned(16)));
  static inline ADAMX_KERNEL_PASS void apply(Vector& x) {
    if constexpr (sizeof(Scalar) == 4) x = reinterpret_cast<Vector>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
    else x = reinterpret_cast<Vector>(_mm256_sqrt_pd(reinterpret_cast<__m256d>(x)));
  }
};
#elif ADAMX_KERNEL_ISA == 2
template <class Scalar>
struct RegisterSqrt<Scalar, 64> {
  typedef Scalar Vector __attribute__((vector_size(64), aligned(16)));
  static inline ADAMX_KERNEL_PASS void apply(Vector& x) {
    if constexpr (sizeof(Scalar) == 4) x = reinterpret_cast<Vector>(_mm512_sqrt_ps(reinterpret_cast<__m512>(x)));
    else x = reinterpret_cast<Vector>(_mm512_sqrt_pd(reinterpret_cast<__m512d>(x)));
  }
};
#endif

namespace ADAMX_KERNEL_ISA_NAMESPACE {

#if ADAMX_KERNEL_ISA == 0
constexpr int kRegisterBytes = kBaselineRegisterBytes;
#elif ADAMX_KERNEL_ISA == 1
constexpr int kRegisterBytes = 32;
#else
constexpr int kRegisterBytes = 64;
#endif

/// The vectors a chunk is made of. g++ 12 turns a comparison of 64-byte
/// vectors written outside the target region (the rules', compiled for the
/// baseline and inlined here) into one scalar comparison per element, where
/// 32-byte vectors become one instruction: with g++ an AVX-512 chunk is two
/// 32-byte halves (AVX-512VL encodings). clang keeps 64-byte vectors whole.
#if ADAMX_KERNEL_ISA == 2 && !defined(__clang__)
constexpr int kChunkRegisterBytes = 32;
#else
constexpr int kChunkRegisterBytes = kRegisterBytes;
#endif

/// Elements per chunk: kNormLanes, or 16 floats in AVX-512's registers.
template <class Scalar>
constexpr int kChunkElements = kRegisterBytes == 64 && sizeof(Scalar) == 4 ? 2 * kNormLanes : kNormLanes;
static_assert(kNormBlock % (2 * kNormLanes) == 0, "blocks must hold whole chunks");

/// The chunk type of these passes.
template <class Scalar>
using ChunkOf = Chunk<Scalar, kChunkElements<Scalar>, kChunkRegisterBytes>;

// ---- the set's lane operations, kNormLanes values at a time -----------------
// The baseline's are simd.hpp's; AVX2 and AVX-512 use 256-bit instructions
// and F16C (isa.hpp requires it for both).

#if ADAMX_KERNEL_ISA == 0
using detail::add_squares8;
using detail::all_within8;
using detail::narrow8;
using detail::widen8;
template <class Scalar>
ADAMX_ALWAYS_INLINE bool all_within16(const Scalar* x, Scalar bound) {
  return all_within8(x, bound) && all_within8(x + kNormLanes, bound);
}
#else
/// lanes[k] += double(g[k])² for k < 8 (exact squares for float g).
ADAMX_ALWAYS_INLINE void add_squares8(const float* g, double* lanes) {
  const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(g));
  const __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(g + 4));
  _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_loadu_pd(lanes), _mm256_mul_pd(lo, lo)));
  _mm256_storeu_pd(lanes + 4, _mm256_add_pd(_mm256_loadu_pd(lanes + 4), _mm256_mul_pd(hi, hi)));
}
ADAMX_ALWAYS_INLINE void add_squares8(const double* g, double* lanes) {
  const __m256d lo = _mm256_loadu_pd(g);
  const __m256d hi = _mm256_loadu_pd(g + 4);
  _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_loadu_pd(lanes), _mm256_mul_pd(lo, lo)));
  _mm256_storeu_pd(lanes + 4, _mm256_add_pd(_mm256_loadu_pd(lanes + 4), _mm256_mul_pd(hi, hi)));
}

/// All ones in each lane k < 8 (floats) or < 4 (doubles) with |x[k]| ≤ bound;
/// zero where x[k] is NaN or beyond.
ADAMX_ALWAYS_INLINE __m256 within_mask(const float* x, float bound) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  return _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x), magnitude), _mm256_set1_ps(bound), _CMP_LE_OQ);
}
ADAMX_ALWAYS_INLINE __m256d within_mask(const double* x, double bound) {
  const __m256d magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffff));
  return _mm256_cmp_pd(_mm256_and_pd(_mm256_loadu_pd(x), magnitude), _mm256_set1_pd(bound), _CMP_LE_OQ);
}

/// Whether |x[k]| ≤ bound for every k < 8; false if any x[k] is NaN.
ADAMX_ALWAYS_INLINE bool all_within8(const float* x, float bound) {
  return _mm256_movemask_ps(within_mask(x, bound)) == 0xFF;
}
ADAMX_ALWAYS_INLINE bool all_within8(const double* x, double bound) {
  return _mm256_movemask_pd(_mm256_and_pd(within_mask(x, bound), within_mask(x + 4, bound))) == 0xF;
}

/// The same for 16 values, with one test and branch: the compares of both
/// halves are joined before the mask is read.
ADAMX_ALWAYS_INLINE bool all_within16(const float* x, float bound) {
  return _mm256_movemask_ps(_mm256_and_ps(within_mask(x, bound), within_mask(x + 8, bound))) == 0xFF;
}
ADAMX_ALWAYS_INLINE bool all_within16(const double* x, double bound) {
  return all_within8(x, bound) && all_within8(x + 8, bound);
}

/// Eight 32-bit lanes holding sign-extended 16-bit values, as eight 16-bit values.
ADAMX_ALWAYS_INLINE __m128i pack8x16(__m256i x) {
  return _mm_packs_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}

/// out[k] = float(x[k]) for k < 8 (exact: a bfloat16 is a float's top half).
ADAMX_ALWAYS_INLINE void widen8(const Eigen::bfloat16* x, float* out) {
  const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  _mm256_storeu_ps(out, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16)));
}

/// out[k] = bfloat16(x[k]) for k < 8, rounded as Eigen rounds (simd.hpp's
/// float_to_bfloat16_bits on eight lanes). A NaN becomes Eigen's quiet NaN
/// with the input's sign; it is rare, so those lanes are fixed up on a
/// branch of their own rather than blended in every chunk.
ADAMX_ALWAYS_INLINE void narrow8(const float* x, Eigen::bfloat16* out) {
  const __m256 f = _mm256_loadu_ps(x);
  const __m256i bits = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i quiet_nan_bits = _mm256_set1_epi32(0x7FC0);
  const __m256i sign_bits = _mm256_set1_epi32(static_cast<int>(0xFFFF8000u));
#if ADAMX_KERNEL_ISA == 2
  // AVX-512: the NaN test into a mask register, and one truncating move
  // (VPMOVDW) instead of an extract and a pack.
  const __mmask8 nan = _mm256_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  if (ADAMX_UNLIKELY(nan != 0)) {
    const __m256i quiet_nan = _mm256_or_si256(_mm256_and_si256(_mm256_srai_epi32(bits, 16), sign_bits), quiet_nan_bits);
    rounded = _mm256_mask_blend_epi32(nan, rounded, quiet_nan);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtepi32_epi16(rounded));
#else
  const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
  if (ADAMX_UNLIKELY(_mm256_movemask_ps(nan) != 0)) {
    const __m256i quiet_nan = _mm256_or_si256(_mm256_and_si256(_mm256_srai_epi32(bits, 16), sign_bits), quiet_nan_bits);
    rounded = _mm256_blendv_epi8(rounded, quiet_nan, _mm256_castps_si256(nan));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), pack8x16(rounded));
#endif
}

/// out[k] = float(x[k]) for k < 8 (exact), by F16C. Eigen's scalar
/// conversion without F16C keeps a signalling NaN's payload as it is, where
/// the instruction sets its quiet bit: lanes that are NaN (rare) are redone
/// by hand, on a branch of their own.
ADAMX_ALWAYS_INLINE void widen8(const Eigen::half* x, float* out) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
  __m256 f = _mm256_cvtph_ps(h);
#if !defined(EIGEN_HAS_FP16_C)
  const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
  if (ADAMX_UNLIKELY(_mm256_movemask_ps(nan) != 0)) {
    const __m256i wide = _mm256_cvtepu16_epi32(h);
    const __m256i kept = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(wide, _mm256_set1_epi32(0x8000)), 16),
                        _mm256_set1_epi32(0x7F800000)),
        _mm256_slli_epi32(_mm256_and_si256(wide, _mm256_set1_epi32(0x03FF)), 13));
    f = _mm256_blendv_ps(f, _mm256_castsi256_ps(kept), nan);
  }
#endif
  _mm256_storeu_ps(out, f);
}

/// out[k] = half(x[k]) for k < 8, rounded as Eigen rounds, by F16C
/// (to nearest, ties to even). Eigen's scalar conversion without F16C makes
/// every NaN the quiet NaN 0x7E00 with the input's sign, where the
/// instruction keeps the payload's top bits: NaN lanes (rare) are replaced
/// on a branch of their own.
ADAMX_ALWAYS_INLINE void narrow8(const float* x, Eigen::half* out) {
  const __m256 f = _mm256_loadu_ps(x);
  __m128i h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
#if !defined(EIGEN_HAS_FP16_C)
  const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
  if (ADAMX_UNLIKELY(_mm256_movemask_ps(nan) != 0)) {
    const __m256i sign_spread = _mm256_srai_epi32(_mm256_castps_si256(f), 16);
    const __m256i quiet_nan = _mm256_or_si256(
        _mm256_and_si256(sign_spread, _mm256_set1_epi32(static_cast<int>(0xFFFF8000u))), _mm256_set1_epi32(0x7E00));
    h = _mm_blendv_epi8(h, pack8x16(quiet_nan), pack8x16(_mm256_castps_si256(nan)));
  }
#endif
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), h);
}
#endif  // ADAMX_KERNEL_ISA != 0

// ---- a chunk's worth -----------------------------------------------------------

/// lanes[k mod kNormLanes] += g[k]² for the E values of a chunk, in order:
/// the additions into each lane come in the order a kNormLanes-wide chunk
/// would make them, so s does not depend on the chunk width.
template <int E, class Scalar>
ADAMX_ALWAYS_INLINE void add_squares(const Scalar* g, Lanes& lanes) {
  for (int k = 0; k < E; k += kNormLanes) add_squares8(g + k, lanes.lane);
}

template <int E, class Scalar>
ADAMX_ALWAYS_INLINE bool all_within(const Scalar* x, Scalar bound) {
  static_assert(E == kNormLanes || E == 2 * kNormLanes, "a chunk is one or two groups of kNormLanes");
  if constexpr (E == kNormLanes) return all_within8(x, bound);
  else return all_within16(x, bound);
}

/// A chunk of parameters or gradients from `x` in the arithmetic type Scalar:
/// a plain load when they are of that type, else widened in registers,
/// exactly as static_cast<Scalar> widens one.
template <class Scalar, class Param>
ADAMX_ALWAYS_INLINE ChunkOf<Scalar> load_chunk(const Param* x) {
  if constexpr (std::is_same<Param, Scalar>::value) {
    return ChunkOf<Scalar>::load(x);
  } else {
    // Written out rather than looped: g++ does not unroll a two-trip loop
    // holding widen8's NaN branch, and the chunk then goes through memory.
    static_assert(kChunkElements<Scalar> == kNormLanes || kChunkElements<Scalar> == 2 * kNormLanes,
                  "a chunk is one or two groups of kNormLanes");
    ChunkOf<Scalar> widened;
    widen8(x, widened.data());
    if constexpr (kChunkElements<Scalar> == 2 * kNormLanes) widen8(x + kNormLanes, widened.data() + kNormLanes);
    return widened;
  }
}

/// Stores a chunk to parameters of type Param, rounded in registers when
/// Param is narrower, exactly as static_cast<Param> rounds one.
template <class Param, class Scalar>
ADAMX_ALWAYS_INLINE void store_chunk(const ChunkOf<Scalar>& value, Param* x) {
  if constexpr (std::is_same<Param, Scalar>::value) {
    value.store(x);
  } else {
    narrow8(value.data(), x);  // written out, as in load_chunk
    if constexpr (kChunkElements<Scalar> == 2 * kNormLanes) narrow8(value.data() + kNormLanes, x + kNormLanes);
  }
}

/// Runs chunk(i) for each whole chunk (E elements) of a block of a pass over
/// `here` (n elements from here's pointers on), with the prefetches that go
/// with it: `distance` (prefetch_distance's) elements ahead, in this tensor
/// or, past its end, in the next one of the group, or none past that. Stops
/// early, returning false, when chunk returns false; returns the index after
/// the last whole chunk otherwise (through `end`). The chunks are split into
/// those three runs up front rather than asking per chunk where its prefetch
/// goes: a tensor of a few thousand elements prefetches only the next one
/// (prefetch_distance), and a test and two branches per chunk there cost
/// about 1 700 instructions per 1024-element tensor, more than the rest of
/// a step's per-tensor work. With Bound > 0 (the fused pass, whose next
/// tensor binds the same arrays as this one), θ and the slots below Bound
/// are bound in both tensors, not tested.
template <int E, int Bound = 0, class Param, class Scalar, int Slots, class OnChunk>
ADAMX_ALWAYS_INLINE bool for_each_chunk_prefetching(const TensorArrays<Param, Scalar, Slots> here,
                                                    const TensorArrays<Param, Scalar, Slots> next, Index n,
                                                    Index& end, OnChunk chunk) {
  const Index distance = prefetch_distance(here.size);
  const Index whole = n - n % E;
  // The first chunk index at or after `limit` (a chunk starts at a multiple of E).
  const auto chunk_stop = [whole](Index limit) {
    if (limit <= 0) return Index{0};
    const Index rounded = (limit + E - 1) / E * E;
    return rounded < whole ? rounded : whole;
  };
  // Chunk i prefetches here's element i + distance while that is < here.size,
  // then next's element i + distance − here.size while that is < next.size.
  const Index in_here = chunk_stop(here.size - distance);
  const Index in_next = chunk_stop(here.size - distance + next.size);
  // One prefetch per 64-byte cache line of the state arrays: a chunk
  // narrower than that (eight floats in 32-byte registers) runs with its
  // neighbours, rather than asking for each line twice.
  constexpr int kLineBytes = 64;
  constexpr int kChunkBytes = E * static_cast<int>(sizeof(Scalar));
  constexpr int kPerLine = kChunkBytes >= kLineBytes ? 1 : kLineBytes / kChunkBytes;
  Index i = 0;
  for (; i + kPerLine * E <= in_here; i += kPerLine * E) {
    prefetch_arrays<Bound>(here, i + distance);
    for (int c = 0; c < kPerLine; ++c)
      if (!chunk(i + c * E)) return false;
  }
  for (; i < in_here; i += E) {
    prefetch_arrays<Bound>(here, i + distance);
    if (!chunk(i)) return false;
  }
  // `at` as an induction variable of its own: each prefetch is then one
  // instruction, as in the loop above, not an address computation and one.
  Index at = i + distance - here.size;
  for (; i + kPerLine * E <= in_next; i += kPerLine * E, at += kPerLine * E) {
    prefetch_arrays<Bound>(next, at);
    for (int c = 0; c < kPerLine; ++c)
      if (!chunk(i + c * E)) return false;
  }
  for (; i < in_next; i += E, at += E) {
    prefetch_arrays<Bound>(next, at);
    if (!chunk(i)) return false;
  }
  for (; i < whole; i += E)
    if (!chunk(i)) return false;
  end = i;
  return true;
}

/// The loops of fused_block, for coefficients `coefficients` of type C (the
/// rule's Coefficients or a specialisation its visit gives).
template <class Rule, class Param, class Scalar, int Slots, class C>
ADAMX_ALWAYS_INLINE double fused_block_loops(const C& coefficients, const TensorArrays<Param, Scalar, Slots> here,
                                             Index n, const TensorArrays<Param, Scalar, Slots> next) {
  constexpr int E = kChunkElements<Scalar>;
  Param* const param = here.param;
  const Param* const grad = here.grad;
  // A local copy: stores through θ and the slots could alias the caller's
  // struct as far as the compiler knows, which would make it reload and
  // re-broadcast every constant in every chunk.
  const C c = coefficients;
  using Chunk = ChunkOf<Scalar>;
  Lanes lanes;
  Index i = 0;
  for_each_chunk_prefetching<E, Rule::kBoundSlots>(here, next, n, i, [&](Index at) ADAMX_ALWAYS_INLINE_LAMBDA {
    LaneState<Chunk, Scalar, Slots> state;
    for (int k = 0; k < Slots; ++k) state.slot[k] = here.slot[k];
    state.at = at;
    Chunk g;
    const Chunk updated = Rule::update(c, load_chunk<Scalar>(param + at), load_chunk<Scalar>(grad + at), g, state);
    store_chunk<Param>(updated, param + at);
    add_squares<E>(g.data(), lanes);
    return true;
  });
  // The last partial chunk, element by element; its element k goes to lane
  // k mod kNormLanes (i is a multiple of E, so of kNormLanes).
  for (int k = 0; i < n; ++i, ++k) {
    LaneState<Scalar, Scalar, Slots> state;
    for (int slot = 0; slot < Slots; ++slot) state.slot[slot] = here.slot[slot];
    state.at = i;
    Scalar g;
    param[i] = static_cast<Param>(
        Rule::update(c, static_cast<Scalar>(param[i]), static_cast<Scalar>(grad[i]), g, state));
    lanes.lane[k % kNormLanes] += square(static_cast<double>(g));
  }
  return combine_lanes(lanes);
}

/// One block (n ≤ kNormBlock elements, pointers at the block's start) of the
/// fused update by Rule (rules/): θ and the state slots updated, and the
/// block's partial of s = Σg² (g as the rule transforms it) returned. Param
/// is the type of the parameters and gradients, Scalar that of the state and
/// the arithmetic (float for bfloat16 and half parameters, converted on load
/// and rounded once on store). The rule's update is one function template:
/// here it runs on chunks, then on the scalars of the block's last partial
/// chunk, the same operations in the same order. When the rule's
/// Coefficients offer visit (HasVisit), the loops are compiled once per
/// variant it names and the choice is made once per block, not by a branch
/// per chunk.
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_KERNEL_PASS double fused_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                     const TensorArrays<Param, Scalar, Slots> here, Index n,
                                     const TensorArrays<Param, Scalar, Slots> next) {
  using C = typename Rule::template Coefficients<Scalar>;
  if constexpr (HasVisit<C>::value) {
    // The rule's visit is compiled for the baseline: it calls the loops
    // (compiled for this set) once per block, not inlined.
    return coefficients.visit([&](const auto& c) ADAMX_KERNEL_PASS_LAMBDA {
      return fused_block_loops<Rule>(c, here, n, next);
    });
  } else {
    return fused_block_loops<Rule>(coefficients, here, n, next);
  }
}

/// Visits one block's transformed gradient (the g the moments would see) for
/// the passes that only read: on_chunk(g) for each whole chunk, then
/// on_element(g, k) for each element k of the last partial chunk. Either
/// returns false to stop early; the visit returns whether it reached the
/// end. Prefetches as fused_block does, for the arrays the caller passes (g
/// always, θ when the rule's gradient reads it).
template <class Rule, class Param, class Scalar, int Slots, class OnChunk, class OnElement>
ADAMX_ALWAYS_INLINE bool visit_transformed_gradient(const typename Rule::template Coefficients<Scalar>& coefficients,
                                                    const TensorArrays<Param, Scalar, Slots> here, Index n,
                                                    const TensorArrays<Param, Scalar, Slots> next, OnChunk on_chunk,
                                                    OnElement on_element) {
  const typename Rule::template Coefficients<Scalar> c = coefficients;  // see fused_block_loops
  const Param* const param = here.param;
  const Param* const grad = here.grad;
  TensorArrays<Param, Scalar, Slots> ahead = here;  // the caller leaves the slots null
  if (!c.gradient_reads_param()) ahead.param = nullptr;
  Index i = 0;
  const bool reached_end =
      for_each_chunk_prefetching<kChunkElements<Scalar>, kGradientOnly>(ahead, next, n, i, [&](Index at) ADAMX_ALWAYS_INLINE_LAMBDA {
        return on_chunk(
            Rule::gradient(c, load_chunk<Scalar>(grad + at), [&] { return load_chunk<Scalar>(param + at); }));
      });
  if (!reached_end) return false;
  for (int k = 0; i < n; ++i, ++k)
    if (!on_element(Rule::gradient(c, static_cast<Scalar>(grad[i]), [&] { return static_cast<Scalar>(param[i]); }),
                    k))
      return false;
  return true;
}

/// The same partial of s that fused_block would return, without changing
/// anything: what the skip and error policies report and name the first bad
/// tensor by when a gradient is not within kSafeGradient (kernel.hpp).
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_KERNEL_PASS double squared_norm_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                            const TensorArrays<Param, Scalar, Slots> here, Index n,
                                            const TensorArrays<Param, Scalar, Slots> next) {
  Lanes lanes;
  visit_transformed_gradient<Rule>(
      coefficients, here, n, next,
      [&](const ChunkOf<Scalar>& g) ADAMX_ALWAYS_INLINE_LAMBDA {
        add_squares<kChunkElements<Scalar>>(g.data(), lanes);
        return true;
      },
      [&](Scalar g, int k) ADAMX_ALWAYS_INLINE_LAMBDA {
        lanes.lane[k % kNormLanes] += square(static_cast<double>(g));
        return true;
      });
  return combine_lanes(lanes);
}

/// Whether every transformed gradient of the block is within kSafeGradient
/// (false for NaN): the first pass of the skip and error policies, which then
/// need s itself only when this fails. It reads g as squared_norm_block does
/// but only compares, so it runs at the speed memory delivers g instead of
/// waiting on a chain of additions per lane of s.
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_KERNEL_PASS bool gradient_within_safe_bound_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                                        const TensorArrays<Param, Scalar, Slots> here, Index n,
                                                        const TensorArrays<Param, Scalar, Slots> next) {
  const Scalar bound = kSafeGradient<Scalar>;
  return visit_transformed_gradient<Rule>(
      coefficients, here, n, next,
      [bound](const ChunkOf<Scalar>& g) ADAMX_ALWAYS_INLINE_LAMBDA {
        return all_within<kChunkElements<Scalar>>(g.data(), bound);
      },
      [bound](Scalar g, int) ADAMX_ALWAYS_INLINE_LAMBDA { return std::abs(g) <= bound; });
}

/// Squares of a plain array in the same block pattern (gradient clipping).
/// bfloat16 and half values are widened to float first (exactly).
template <class Scalar>
ADAMX_KERNEL_PASS double squared_sum_block(const Scalar* x, Index n, Index available) {
  Lanes lanes;
  Index i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    if (i + kPrefetchDistance < available) prefetch<false>(x + i + kPrefetchDistance);
    if constexpr (std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value) {
      add_squares8(x + i, lanes.lane);
    } else {
      float widened[kNormLanes];
      widen8(x + i, widened);
      add_squares8(widened, lanes.lane);
    }
  }
  for (int lane = 0; i < n; ++i, ++lane) lanes.lane[lane] += square(static_cast<double>(x[i]));
  return combine_lanes(lanes);
}

/// out[k] = To(x[k]) for k < n, between float and bfloat16 or half, by this
/// set's conversions eight at a time and static_cast for the rest: what
/// the passes' loads and stores do, as one call (tests/test_conversion.cpp
/// checks it against Eigen's conversions on every set).
template <class From, class To>
ADAMX_KERNEL_PASS void convert_block(const From* x, To* out, Index n) {
  Index i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    if constexpr (std::is_same<To, float>::value) widen8(x + i, out + i);
    else narrow8(x + i, out + i);
  }
  for (; i < n; ++i) out[i] = static_cast<To>(x[i]);
}

}  // namespace ADAMX_KERNEL_ISA_NAMESPACE
}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx

#undef ADAMX_KERNEL_ISA_NAMESPACE
