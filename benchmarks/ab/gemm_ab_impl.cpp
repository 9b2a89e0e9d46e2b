// One side of benchmarks/gemm_ab.sh: sft's gemm_packed from one source tree, compiled with
// -DSFT_AB_SIDE=base (and -Dsft=sft_base, so that both trees link into one program) or
// -DSFT_AB_SIDE=work.
#include <sft/kernels/gemm_packed.hpp>
#include <sft/parallel.hpp>

#define SFT_AB_CAT2(a, b) a##b
#define SFT_AB_CAT(a, b) SFT_AB_CAT2(a, b)

void SFT_AB_CAT(SFT_AB_SIDE, _gemm)(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                                    std::size_t ldb, float beta, float* c, std::size_t ldc) {
    sft::kernels::gemm_packed<float>(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void SFT_AB_CAT(SFT_AB_SIDE, _set_threads)(int threads) { sft::set_num_threads(static_cast<std::size_t>(threads)); }
