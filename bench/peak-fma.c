// The machine's float32 FMA peak, the ceiling for the GF/s columns of `npm run bench:models`:
// ten independent AVX2 FMA chains per thread (enough to cover FMA latency on two pipes), on one
// thread and on two at once.
//   cc -O2 -o /tmp/peak-fma bench/peak-fma.c -lpthread && /tmp/peak-fma
// Measured on this project's 2-vCPU AMD EPYC (Zen 3): ~100 GF/s on one thread, ~195-200 on two
// (the two vCPUs are separate cores).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile float sink;
static const long kIters = 100000000;

__attribute__((target("avx2,fma"), noinline)) static void* chains(void* unused) {
  (void)unused;
  __m256 a0 = _mm256_set1_ps(0.1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
  for (long i = 0; i < kIters; i++) {
    // Keeps the compiler from folding the loop: the chains are opaque to it here.
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9));
    a0 = _mm256_fmadd_ps(a0, b, c); a1 = _mm256_fmadd_ps(a1, b, c); a2 = _mm256_fmadd_ps(a2, b, c);
    a3 = _mm256_fmadd_ps(a3, b, c); a4 = _mm256_fmadd_ps(a4, b, c); a5 = _mm256_fmadd_ps(a5, b, c);
    a6 = _mm256_fmadd_ps(a6, b, c); a7 = _mm256_fmadd_ps(a7, b, c); a8 = _mm256_fmadd_ps(a8, b, c);
    a9 = _mm256_fmadd_ps(a9, b, c);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
  float t[8];
  _mm256_storeu_ps(t, s);
  sink = t[0];
  return NULL;
}

int main(void) {
  const double flop = kIters * 10.0 * 16.0;  // 10 chains x 8 lanes x 2 FLOP per FMA
  double t0 = now();
  chains(NULL);
  printf("1 thread:  %.1f GF/s\n", flop / (now() - t0) / 1e9);
  pthread_t th;
  t0 = now();
  pthread_create(&th, NULL, chains, NULL);
  chains(NULL);
  pthread_join(th, NULL);
  printf("2 threads: %.1f GF/s\n", 2 * flop / (now() - t0) / 1e9);
  return 0;
}
