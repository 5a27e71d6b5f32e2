/* What this machine's memory system charges for the SE block's passes, one thread.
 *
 *   gcc -O2 -mavx512f -o membw benchmarks/probes/membw.c && ./membw 1638400 102760448
 *
 * Arguments: chunk bytes, total bytes. Over a float buffer of `total` bytes, median of 15:
 *   memcpy        the clone floor
 *   read          a sum of every element (the squeeze alone)
 *   store         sum a chunk, then y = x * s over it with plain stores (a fused forward)
 *   stream        the same with non-temporal stores (y does not evict x from the cache)
 * Needs AVX-512F. Reports, never asserts. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s CHUNK_BYTES TOTAL_BYTES\n", argv[0]);
    return 2;
  }
  const size_t chunk = (size_t)atol(argv[1]) / 4 / 16 * 16;
  const size_t n = (size_t)atol(argv[2]) / 4 / chunk * chunk;
  float* x = aligned_alloc(64, n * 4);
  float* y = aligned_alloc(64, n * 4);
  for (size_t i = 0; i < n; i++) x[i] = y[i] = (float)(i % 1000) * 0.001f;
  const char* names[] = {"memcpy", "read", "store", "stream"};
  volatile float sink = 0;
  for (int mode = 0; mode < 4; mode++) {
    double t[15];
    for (int r = 0; r < 15; r++) {
      const double start = now_us();
      __m512 acc = _mm512_setzero_ps();
      if (mode == 0) {
        memcpy(y, x, n * 4);
      } else if (mode == 1) {
        for (size_t i = 0; i < n; i += 16) acc = _mm512_add_ps(acc, _mm512_load_ps(x + i));
      } else {
        for (size_t c0 = 0; c0 < n; c0 += chunk) {
          for (size_t i = c0; i < c0 + chunk; i += 16) acc = _mm512_add_ps(acc, _mm512_load_ps(x + i));
          const __m512 s = _mm512_mul_ps(acc, _mm512_set1_ps(1e-9f));
          for (size_t i = c0; i < c0 + chunk; i += 16) {
            const __m512 v = _mm512_mul_ps(_mm512_load_ps(x + i), s);
            if (mode == 2) _mm512_store_ps(y + i, v); else _mm512_stream_ps(y + i, v);
          }
        }
        _mm_sfence();
      }
      sink += _mm512_reduce_add_ps(acc);
      t[r] = now_us() - start;
    }
    qsort(t, 15, sizeof(double), cmp);
    printf("%-7s chunk %zu B, total %zu B: %.0f us\n", names[mode], chunk * 4, n * 4, t[7]);
  }
  free(x);
  free(y);
  return 0;
}
