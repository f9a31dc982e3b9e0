/* memcpy and memmove for x86_64 (SSE2, which every x86_64 has): copies of up
 * to 64 bytes are a few loads, all made before any store, from both ends of
 * the range (so they hold for overlapping ranges too); longer ones go 64
 * bytes at a time, and from 2 KiB on `rep movsb`, which CPUs with ERMSB run
 * at full speed. Built with -fno-builtin and
 * -fno-tree-loop-distribute-patterns so that the compiler does not turn a
 * loop back into a call to memcpy. */
#include <emmintrin.h>
#include <stddef.h>
#include <stdint.h>

typedef unsigned char u8;

#define LOAD16(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define STORE16(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

static inline uint64_t load8(const u8 *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

static inline void store8(u8 *p, uint64_t v)
{
	__builtin_memcpy(p, &v, 8);
}

static inline uint32_t load4(const u8 *p)
{
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

static inline void store4(u8 *p, uint32_t v)
{
	__builtin_memcpy(p, &v, 4);
}

static inline uint16_t load2(const u8 *p)
{
	uint16_t v;
	__builtin_memcpy(&v, p, 2);
	return v;
}

static inline void store2(u8 *p, uint16_t v)
{
	__builtin_memcpy(p, &v, 2);
}

/* n <= 64; every byte is read before any is written. */
static inline void copy_short(u8 *d, const u8 *s, size_t n)
{
	if (n >= 32) {
		__m128i a = LOAD16(s), b = LOAD16(s + 16);
		__m128i c = LOAD16(s + n - 32), e = LOAD16(s + n - 16);
		STORE16(d, a);
		STORE16(d + 16, b);
		STORE16(d + n - 32, c);
		STORE16(d + n - 16, e);
	} else if (n >= 16) {
		__m128i a = LOAD16(s), b = LOAD16(s + n - 16);
		STORE16(d, a);
		STORE16(d + n - 16, b);
	} else if (n >= 8) {
		uint64_t a = load8(s), b = load8(s + n - 8);
		store8(d, a);
		store8(d + n - 8, b);
	} else if (n >= 4) {
		uint32_t a = load4(s), b = load4(s + n - 4);
		store4(d, a);
		store4(d + n - 4, b);
	} else if (n >= 2) {
		uint16_t a = load2(s), b = load2(s + n - 2);
		store2(d, a);
		store2(d + n - 2, b);
	} else if (n == 1) {
		*d = *s;
	}
}

/* 64 bytes, read before written. */
static inline void copy64(u8 *d, const u8 *s)
{
	__m128i a = LOAD16(s), b = LOAD16(s + 16), c = LOAD16(s + 32), e = LOAD16(s + 48);
	STORE16(d, a);
	STORE16(d + 16, b);
	STORE16(d + 32, c);
	STORE16(d + 48, e);
}

static inline void rep_movsb(u8 *d, const u8 *s, size_t n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

/* Front to back: right for any ranges but those where d lies inside
 * (s, s + n). */
static inline void forward(u8 *d, const u8 *s, size_t n)
{
	if (n <= 64) {
		copy_short(d, s, n);
		return;
	}
	if (n >= 2048) {
		rep_movsb(d, s, n);
		return;
	}
	size_t i = 0;
	for (; n - i > 64; i += 64)
		copy64(d + i, s + i);
	copy_short(d + i, s + i, n - i);
}

/* Back to front, for d inside (s, s + n). */
static inline void backward(u8 *d, const u8 *s, size_t n)
{
	size_t i = n;
	while (i > 64) {
		i -= 64;
		copy64(d + i, s + i);
	}
	copy_short(d, s, i);
}

void *hge_memcpy(void *restrict dest, const void *restrict src, size_t n)
{
	forward(dest, src, n);
	return dest;
}

void *hge_memmove(void *dest, const void *src, size_t n)
{
	u8 *d = dest;
	const u8 *s = src;
	if ((uintptr_t)d - (uintptr_t)s >= n)
		forward(d, s, n);
	else
		backward(d, s, n);
	return dest;
}

#ifdef HGE_REPLACE_LIBC
/* Defined here, libc's are never taken from libc.a. */
void *memcpy(void *restrict dest, const void *restrict src, size_t n)
{
	forward(dest, src, n);
	return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
	return hge_memmove(dest, src, n);
}
#endif
