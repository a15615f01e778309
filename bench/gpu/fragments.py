"""bench/gpu/fragments.py — checks the tensor-core index math of kernels/ without a GPU.

Emulates, in float64 with numpy, the warp-level fragment layouts of the PTX ISA (ldmatrix .x4 with and
without .trans, mma.sync m16n8k16 bf16 and m16n8k8 tf32) and replays the addressing of
matmul_tc_kernel (both tiles, plain and gated, ragged M/N/K; the cp.async chunk loader included) and of
attention_tc_kernel (S = Q·Kᵀ from ldmatrix of K, O = P·V with P re-packed from the S accumulators and
V through ldmatrix .trans). Exact small integers in, so any indexing slip shows as a non-zero error.
It checks our reading of the layouts against our code, not the hardware: the GPU tests do that.

    ~/.cache/pix2struct-ref/bin/python bench/gpu/fragments.py     (any Python with numpy)
"""
import numpy as np
rng = np.random.default_rng(0)
ROW = 40  # bf16 elements per smem row (80 bytes) in the GEMM

def ldmatrix_x4(smem, addr_of_lane, trans=False):
    """smem: 1-D array of b16 elements; addr_of_lane(lane) -> element offset of that lane's row start.
    Returns regs[lane][i] = (lo, hi) for matrix i."""
    rows = [addr_of_lane(l) for l in range(32)]
    out = [[None]*4 for _ in range(32)]
    for i in range(4):
        mat = np.array([[smem[rows[8*i + r] + c] for c in range(8)] for r in range(8)])
        for lane in range(32):
            g, t = lane // 4, lane % 4
            if not trans: out[lane][i] = (mat[g, 2*t], mat[g, 2*t+1])
            else: out[lane][i] = (mat[2*t, g], mat[2*t+1, g])
    return out

def mma16816(acc, a, b0, b1):
    """acc[lane] = [c0..c3]; a[lane] = 4 pairs; b0/b1[lane] pairs. Builds A (16x16), B (16x8) and adds."""
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane // 4, lane % 4
        A[g, 2*t:2*t+2] = a[lane][0]; A[g+8, 2*t:2*t+2] = a[lane][1]
        A[g, 2*t+8:2*t+10] = a[lane][2]; A[g+8, 2*t+8:2*t+10] = a[lane][3]
        B[2*t:2*t+2, g] = b0[lane]; B[2*t+8:2*t+10, g] = b1[lane]
    C = A @ B
    for lane in range(32):
        g, t = lane // 4, lane % 4
        acc[lane][0] += C[g, 2*t]; acc[lane][1] += C[g, 2*t+1]
        acc[lane][2] += C[g+8, 2*t]; acc[lane][3] += C[g+8, 2*t+1]

def gemm_tc(X, W, Wu, BM, BN, WARPS_M, WARPS_N):
    M, K = X.shape; N = W.shape[0]
    WM, WN = BM // WARPS_M, BN // WARPS_N; MT, NT = WM // 16, WN // 8
    kBK = 32; threads = WARPS_M * WARPS_N * 32; gated = Wu is not None
    Y = np.full((M, N), np.nan)
    bn_eff = BN // 2 if gated else BN
    for by in range(-(-M // BM)):
        for bx in range(-(-N // bn_eff)):
            m0, n0 = by * BM, bx * bn_eff
            accs = {}
            for kt in range(-(-K // kBK)):
                k0 = kt * kBK
                smem = np.zeros((BM + BN) * ROW)
                # loader: chunks (16 bytes = 8 elements)
                for c in range(BM * 4):
                    r, j = c // 4, c % 4
                    for e in range(8):
                        k = k0 + j*8 + e
                        if m0 + r < M and k0 + j*8 < K: smem[r*ROW + j*8 + e] = X[m0+r, k]
                for c in range(BN * 4):
                    r, j = c // 4, c % 4
                    if gated:
                        in_warp, half = r % WN, WN // 2
                        n = n0 + (r // WN) * half + in_warp % half; w = Wu if in_warp >= half else W
                    else:
                        n = n0 + r; w = W
                    for e in range(8):
                        if n < N and k0 + j*8 < K: smem[BM*ROW + r*ROW + j*8 + e] = w[n, k0 + j*8 + e]
                for warp in range(threads // 32):
                    wm, wn = warp // WARPS_N, warp % WARPS_N
                    acc = accs.setdefault(warp, np.zeros((MT, NT, 32, 4)))
                    sA = wm * WM * ROW; sB = BM * ROW + wn * WN * ROW
                    for ks in range(kBK // 16):
                        af = [ldmatrix_x4(smem, lambda l, i=i: sA + (i*16 + l % 16)*ROW + ks*16 + (l // 16)*8) for i in range(MT)]
                        bfr = [None]*NT
                        for j in range(NT // 2):
                            r = ldmatrix_x4(smem, lambda l, j=j: sB + (j*16 + (l & 7) + ((l >> 4) << 3))*ROW + ks*16 + ((l >> 3) & 1)*8)
                            bfr[2*j] = ([r[l][0] for l in range(32)], [r[l][1] for l in range(32)])
                            bfr[2*j+1] = ([r[l][2] for l in range(32)], [r[l][3] for l in range(32)])
                        for i in range(MT):
                            for j in range(NT):
                                mma16816(acc[i, j], af[i], bfr[j][0], bfr[j][1])
            for warp, acc in accs.items():
                wm, wn = warp // WARPS_N, warp % WARPS_N
                for lane in range(32):
                    g, t = lane // 4, lane % 4
                    for i in range(MT):
                        row = m0 + wm*WM + i*16 + g
                        if gated:
                            for j in range(NT // 2):
                                col = n0 + wn*(WN//2) + j*8 + 2*t
                                for e in range(4):
                                    rr, cc = row + 8*(e // 2), col + (e % 2)
                                    h, u = acc[i, j, lane, e], acc[i, j + NT//2, lane, e]
                                    if rr < M and cc < N: Y[rr, cc] = h * 1000 + u   # encodes both products
                        else:
                            for j in range(NT):
                                col = n0 + wn*WN + j*8 + 2*t
                                for e in range(4):
                                    rr, cc = row + 8*(e // 2), col + (e % 2)
                                    if rr < M and cc < N: Y[rr, cc] = acc[i, j, lane, e]
    return Y

for (M, N, K, gated, tile) in [(70, 40, 48, False, (64, 64, 2, 2)), (33, 72, 40, True, (64, 64, 2, 2)),
                               (130, 140, 32, False, (128, 128, 2, 4)), (20, 70, 64, True, (128, 128, 2, 4))]:
    X = rng.integers(-3, 4, (M, K)).astype(float); W = rng.integers(-3, 4, (N, K)).astype(float)
    Wu = rng.integers(-3, 4, (N, K)).astype(float) if gated else None
    Y = gemm_tc(X, W, Wu, *tile)
    ref = X @ W.T if not gated else (X @ W.T) * 1000 + X @ Wu.T
    print("gemm", M, N, K, "gated" if gated else "", tile, "max err", np.nanmax(np.abs(Y - ref)), "nan", np.isnan(Y).sum())

# ---- TF32 fragments (m16n8k8): rows of 20 floats
def mma1688(acc, a, b):
    A = np.zeros((16, 8)); B = np.zeros((8, 8))
    for lane in range(32):
        g, t = lane // 4, lane % 4
        A[g, t], A[g+8, t], A[g, t+4], A[g+8, t+4] = a[lane]
        B[t, g], B[t+4, g] = b[lane]
    C = A @ B
    for lane in range(32):
        g, t = lane // 4, lane % 4
        acc[lane] += [C[g, 2*t], C[g, 2*t+1], C[g+8, 2*t], C[g+8, 2*t+1]]
R32 = 20
Xs = rng.integers(-3, 4, (16, 16)).astype(float); Ws = rng.integers(-3, 4, (8, 16)).astype(float)
sA = np.zeros(16*R32); sB = np.zeros(8*R32)
for r in range(16): sA[r*R32:r*R32+16] = Xs[r]
for r in range(8): sB[r*R32:r*R32+16] = Ws[r]
acc = np.zeros((32, 4))
for ks in range(2):
    a = [(sA[(l//4)*R32 + ks*8 + l%4], sA[(l//4+8)*R32 + ks*8 + l%4], sA[(l//4)*R32 + ks*8 + l%4 + 4], sA[(l//4+8)*R32 + ks*8 + l%4 + 4]) for l in range(32)]
    b = [(sB[(l//4)*R32 + ks*8 + l%4], sB[(l//4)*R32 + ks*8 + l%4 + 4]) for l in range(32)]
    mma1688(acc, a, b)
ref = Xs @ Ws.T
err = max(abs(acc[l][e] - ref[l//4 + 8*(e//2), 2*(l%4) + e%2]) for l in range(32) for e in range(4))
print("tf32 fragment max err", err)

# ---- attention: one warp, 16 queries x 64 keys x d 64, S = QK^T then O = S V via the kernel's indexing
AR = 72
Q = rng.integers(-2, 3, (16, 64)).astype(float); Kt = rng.integers(-2, 3, (64, 64)).astype(float); V = rng.integers(-2, 3, (64, 64)).astype(float)
sQ = np.zeros(16*AR); sK = np.zeros(64*AR); sV = np.zeros(64*AR)
for r in range(16): sQ[r*AR:r*AR+64] = Q[r]
for r in range(64): sK[r*AR:r*AR+64] = Kt[r]; sV[r*AR:r*AR+64] = V[r]
qf = [ldmatrix_x4(sQ, lambda l, kk=kk: (l % 16)*AR + kk*16 + (l // 16)*8) for kk in range(4)]
s = np.zeros((8, 32, 4))
for kk in range(4):
    for np_ in range(4):
        r = ldmatrix_x4(sK, lambda l, np_=np_, kk=kk: (np_*16 + (l & 7) + ((l >> 4) << 3))*AR + kk*16 + ((l >> 3) & 1)*8)
        mma16816(s[2*np_], qf[kk], [r[l][0] for l in range(32)], [r[l][1] for l in range(32)])
        mma16816(s[2*np_+1], qf[kk], [r[l][2] for l in range(32)], [r[l][3] for l in range(32)])
S = Q @ Kt.T
err = max(abs(s[nt][l][e] - S[l//4 + 8*(e//2), nt*8 + 2*(l%4) + e%2]) for nt in range(8) for l in range(32) for e in range(4))
print("attention S max err", err)
o = np.zeros((8, 32, 4))
for kk in range(4):
    pa = [((s[2*kk][l][0], s[2*kk][l][1]), (s[2*kk][l][2], s[2*kk][l][3]), (s[2*kk+1][l][0], s[2*kk+1][l][1]), (s[2*kk+1][l][2], s[2*kk+1][l][3])) for l in range(32)]
    for dp in range(4):
        r = ldmatrix_x4(sV, lambda l, kk=kk, dp=dp: (kk*16 + (l & 7) + ((l >> 3) & 1)*8)*AR + dp*16 + (l >> 4)*8, trans=True)
        mma16816(o[2*dp], pa, [r[l][0] for l in range(32)], [r[l][1] for l in range(32)])
        mma16816(o[2*dp+1], pa, [r[l][2] for l in range(32)], [r[l][3] for l in range(32)])
O = S @ V
err = max(abs(o[dt][l][e] - O[l//4 + 8*(e//2), dt*8 + 2*(l%4) + e%2]) for dt in range(8) for l in range(32) for e in range(4))
print("attention O max err", err)
