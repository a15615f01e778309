// CpuBackend's attention against a float64 evaluation of the same formula on random inputs:
// O = softmax(Q·Kᵀ + bias, masked keys → weight 0) · V per head, no 1/√D, rows strided as the model lays them
// out (Q/K/V side by side in one row). One query row (decode steps) and many, key counts from 1 to 2048 with
// and without the key mask and the additive bias, on 1 and 2 threads; a head's work stays on one thread, so
// both thread counts must give the same bits.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "pix2struct/backend/cpu.hpp"

using namespace pix2struct;

namespace {

struct Case {
    int64_t Tq, Tk;
    int heads, D;
    bool mask, bias;
};

// Relative error of every output against float64: max |ours - ref| / max(1, max |ref|).
std::vector<float> run(CpuBackend& cpu, const Case& c, double& rel) {
    std::mt19937 rng(int(c.Tq * 7919 + c.Tk));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t I = int64_t(c.heads) * c.D, ld = 3 * I;  // rows of Q, K, V with room between them
    std::vector<float> q(size_t(c.Tq * ld)), k(size_t(c.Tk * ld)), v(size_t(c.Tk * ld)), o(size_t(c.Tq * I), NAN);
    for (auto* x : {&q, &k, &v})
        for (float& e : *x) e = nd(rng);
    std::vector<float> mask(size_t(c.Tk), 1.0f), bias(size_t(c.heads * c.Tq * c.Tk));
    for (int64_t j = 0; j < c.Tk; j += 3) mask[size_t(j)] = c.mask && j > 0 ? 0.0f : 1.0f;
    for (float& e : bias) e = nd(rng);
    cpu.attention(AttentionArgs<float>{.q = q.data(), .k = k.data(), .v = v.data(), .o = o.data(), .H = c.heads,
                                       .Lq = int(c.Tq), .Lk = int(c.Tk), .D = c.D, .q_row = ld, .k_row = ld,
                                       .v_row = ld, .o_row = I, .key_mask = c.mask ? mask.data() : nullptr,
                                       .bias = c.bias ? bias.data() : nullptr});
    double err = 0, scale = 1;
    for (int h = 0; h < c.heads; ++h)
        for (int64_t i = 0; i < c.Tq; ++i) {
            std::vector<double> p(size_t(c.Tk));
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < c.Tk; ++j) {
                double s = 0;
                for (int d = 0; d < c.D; ++d) s += double(q[size_t(i * ld + h * c.D + d)]) * k[size_t(j * ld + h * c.D + d)];
                if (c.bias) s += bias[size_t((h * c.Tq + i) * c.Tk + j)];
                p[size_t(j)] = s;
                if (mask[size_t(j)] != 0.0f || !c.mask) mx = std::max(mx, s);
            }
            for (int64_t j = 0; j < c.Tk; ++j) {
                p[size_t(j)] = (c.mask && mask[size_t(j)] == 0.0f) ? 0.0 : std::exp(p[size_t(j)] - mx);
                sum += p[size_t(j)];
            }
            for (int d = 0; d < c.D; ++d) {
                double r = 0;
                for (int64_t j = 0; j < c.Tk; ++j) r += p[size_t(j)] / sum * v[size_t(j * ld + h * c.D + d)];
                const float ours = o[size_t(i * I + h * c.D + d)];
                err = std::max(err, std::isfinite(ours) ? std::fabs(ours - r) : INFINITY);
                scale = std::max(scale, std::fabs(r));
            }
        }
    rel = err / scale;
    return o;
}

}  // namespace

TEST_CASE("cpu backend: attention equals float64 softmax attention (one query and many, 1 and 2 threads)") {
    CpuBackend one(1), two(2);
    for (const Case& c : {Case{1, 1, 2, 24, false, true}, Case{1, 21, 12, 64, false, true},
                          Case{1, 256, 12, 64, false, false}, Case{1, 257, 12, 64, true, false},
                          Case{1, 2009, 12, 64, false, false}, Case{1, 2048, 16, 64, true, true},
                          Case{3, 700, 4, 32, true, true}, Case{70, 130, 2, 64, true, false}}) {
        CAPTURE(c.Tq);
        CAPTURE(c.Tk);
        CAPTURE(c.heads);
        double rel1 = 0, rel2 = 0;
        const std::vector<float> a = run(one, c, rel1), b = run(two, c, rel2);
        CHECK(rel1 <= 1e-5);
        CHECK(rel2 <= 1e-5);
        CHECK(a == b);
    }
}

TEST_CASE("cpu backend: argmax is the first maximum, and kNonFiniteLogits for a row holding NaN or infinity") {
    pix2struct::CpuBackend cpu(1);
    auto argmax = [&](std::vector<float> x) {
        int32_t t = 12345;
        cpu.argmax(x.data(), int64_t(x.size()), &t);
        return t;
    };
    CHECK(argmax({0.5f}) == 0);
    CHECK(argmax({-3.f, 2.f, 7.f, 7.f, 1.f}) == 2);  // ties: the first, as torch.argmax
    CHECK(argmax({-1e30f, -2e30f}) == 0);
    CHECK(argmax({1.f, NAN, 3.f}) == pix2struct::kNonFiniteLogits);
    CHECK(argmax({1.f, INFINITY, 3.f}) == pix2struct::kNonFiniteLogits);
    CHECK(argmax({1.f, 2.f, -INFINITY}) == pix2struct::kNonFiniteLogits);
}
