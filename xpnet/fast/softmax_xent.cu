// Softmax + mean cross-entropy + its gradient in one pass per row: xpnet.nn.layers'
// SoftmaxWithLoss (the reference) written again as a CUDA kernel. xpnet/fast/kernels_cupy.py
// reads this file (importlib.resources) and compiles it with cupy.RawModule; self_check compares
// it with the layers on each device before its first use.
template <typename T>
__device__ void softmax_xent(const T* a, const T* b, const long long* t, T* dz, T* row_loss,
                             int n, int c) {
    // One thread per row, any number of rows and classes; dz may alias a (each thread reads its
    // row before writing it). A label outside 0..c-1 makes the row's loss and gradient NaN
    // instead of reading outside the row. row_loss[i] is the row's loss / n; the caller sums it.
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n) return;
    const T* z = a + (long long)row * c;
    T* out = dz + (long long)row * c;
    const long long label = t[row];
    const T inv_n = T(1) / T(n);
    if (label < 0 || label >= c) {
        const T nan = T(0) / T(0);
        for (int k = 0; k < c; ++k) out[k] = nan;
        row_loss[row] = nan;
        return;
    }
    T m = z[0] + b[0];
    for (int k = 1; k < c; ++k) {
        const T v = z[k] + b[k];
        m = (v > m || v != v) ? v : m;  // NaN wins, so a diverged row stays NaN
    }
    T s = 0;
    for (int k = 0; k < c; ++k) s += exp(z[k] + b[k] - m);
    const T picked = z[label] + b[label] - m;
    for (int k = 0; k < c; ++k) {
        const T y = exp(z[k] + b[k] - m) / s;
        out[k] = (y - (k == label ? T(1) : T(0))) * inv_n;
    }
    row_loss[row] = (log(s) - picked) * inv_n;
}

extern "C" __global__ void softmax_xent_f32(const float* a, const float* b, const long long* t,
                                            float* dz, float* row_loss, int n, int c) {
    softmax_xent<float>(a, b, t, dz, row_loss, n, c);
}

extern "C" __global__ void softmax_xent_f64(const double* a, const double* b, const long long* t,
                                            double* dz, double* row_loss, int n, int c) {
    softmax_xent<double>(a, b, t, dz, row_loss, n, c);
}
